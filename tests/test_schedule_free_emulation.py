"""The schedule-free CUDA kernel body (csrc/include/schedule_free_block.h), run on the CPU over
every (block, thread) of the launch plan by fusedlr.emulate, against the CPU op (at::vec) and
against float64 math from the formulas: odd sizes (1, 7, 4097, 65537), every dtype, split
launches (few tensors / blocks per launch, small blocks), misaligned tensors, update and the
train/eval switches; the scalar pass through the CUDA body against the CPU op."""

import random

import pytest
import torch

from fusedlr import emulate, ops
from fusedlr.schedule_free import GROUP_FIELDS, STATE_FIELDS
from fusedlr.schedules import LinearLR, ProgramBuilder

SIZES = (1, 7, 4097, 65537)
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
SHAPES = [dict(), dict(max_tensors_per_launch=1, threads_per_block=64, max_blocks_per_launch=1),
          dict(max_tensors_per_launch=2, threads_per_block=33, max_blocks_per_launch=3)]


def _rows(adam, gen):
    """hparams of two groups (random hyperparameters) and a state row after some steps."""
    hp = torch.zeros(2, GROUP_FIELDS, dtype=torch.float64)
    for g in range(2):
        hp[g, 0] = 10 ** random.uniform(-3, -1)  # lr
        hp[g, 1] = random.choice([0.0, 0.01])  # weight decay
        hp[g, 2] = random.uniform(0.5, 0.95)  # momentum / beta1
        hp[g, 3] = random.uniform(0.9, 0.999) if adam else 0.0  # beta2
        hp[g, 4] = 1e-8 if adam else 0.0
        hp[g, 9] = 1.0
        hp[g, 10] = -1.0
        hp[g, 11] = 1.0
        hp[g, 12] = random.choice([0.0, 5.0])
        hp[g, 13] = random.choice([0.0, 1.0])
        hp[g, 14] = 2.0
    state = torch.zeros(2, STATE_FIELDS, dtype=torch.float64)
    state[:, 1] = -1.0
    program = torch.zeros(0, dtype=torch.float64)
    for _ in range(random.randrange(1, 9)):
        ops.schedule_free_prepare_(program, hp, state)
    return hp, state


def _tensors(dtype, adam, gen, misalign):
    """Tensors of SIZES; misalign: views one element into their storage (no vector path)."""
    off = 1 if misalign else 0

    def make(n):
        return torch.randn(n + off, generator=gen, dtype=torch.float64).to(dtype)[off:]

    params = [make(n) for n in SIZES]
    grads = [make(n) for n in SIZES]
    zs = [make(n) for n in SIZES]
    vs = [make(n).abs() for n in SIZES] if adam else []
    return params, grads, zs, vs


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("operation", [0, 1, 2], ids=["update", "train", "eval"])
@pytest.mark.parametrize("adam", [False, True], ids=["SGD", "AdamW"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cuda_body_matches_cpu_op(dtype, adam, operation, shape):
    seed = random.randrange(2**31)
    random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    hp, state = _rows(adam, gen)
    params, grads, zs, vs = _tensors(dtype, adam, gen, misalign=random.random() < 0.5)
    groups = torch.tensor([random.randrange(2) for _ in params], dtype=torch.int64)
    ref = [[t.clone() for t in lst] for lst in (params, zs, vs)]
    if operation == 0:  # the CPU op's scalar pass + update; the CUDA bodies of both passes
        program = torch.zeros(0, dtype=torch.float64)
        ref_state = state.clone()
        ops.schedule_free_update_(ref[0], grads, ref[1], ref[2], groups, program, hp, ref_state)
        emulate.emulate_schedule_free_prepare_(program, hp, state, 1)
        assert torch.equal(state, ref_state)
        emulate.emulate_schedule_free_(params, grads, zs, vs, groups, hp, state, 0, **shape)
    else:
        ops.schedule_free_swap_(ref[0], ref[1], groups, hp, operation == 1)
        emulate.emulate_schedule_free_(params, [], zs, [], groups, hp, state, operation, **shape)
    # The same element math in at::vec lanes and in scalar code, without FMA contraction (and
    # IEEE sqrt / division in both): bit for bit.
    for ours, theirs in zip(params + zs + vs, ref[0] + ref[1] + ref[2], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0, msg=f"seed {seed}")


def test_update_matches_float64_formula():
    """One update in float64 against the formulas of schedule_free.h written out in torch."""
    gen = torch.Generator().manual_seed(random.randrange(2**31))
    hp, state = _rows(True, gen)
    params, grads, zs, vs = _tensors(torch.float64, True, gen, misalign=False)
    groups = torch.tensor([0, 1, 0, 1], dtype=torch.int64)
    expect = []
    for y, g, z, v, gi in zip(params, grads, zs, vs, groups.tolist(), strict=True):
        lr, c, bc2 = state[gi, 3].item(), state[gi, 4].item(), state[gi, 5].item()
        wd, b1, b2, eps = (hp[gi, i].item() for i in (1, 2, 3, 4))
        v2 = v * b2 + (1 - b2) * g * g
        gn = g / ((v2 / bc2).sqrt() + eps) + wd * y
        y2 = torch.lerp(y, z, c) + lr * (b1 * (1 - c) - 1) * gn
        expect += [y2, z - lr * gn, v2]
    emulate.emulate_schedule_free_(params, grads, zs, vs, groups, hp, state, 0)
    got = [t for trio in zip(params, zs, vs, strict=True) for t in trio]
    for a, b in zip(got, expect, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("threads", [1, 3, 64])
def test_prepare_body_matches_cpu_op(threads):
    random.seed(random.randrange(2**31))
    builder = ProgramBuilder()
    root = builder.add(LinearLR(0.1, 1.0, 7), 0)
    program = builder.tensor()
    hp, state = _rows(True, None)
    hp = torch.cat([hp] * 3)  # six groups: several blocks with few threads
    hp[::2, 10] = float(root)
    state = torch.cat([state] * 3)
    ref = state.clone()
    for _ in range(11):
        ops.schedule_free_prepare_(program, hp, ref)
        emulate.emulate_schedule_free_prepare_(program, hp, state, threads)
    assert torch.equal(state, ref)
    assert state[0, 0] > 11
