"""The CUDA kernel bodies, run on the CPU by the emulator, against the CPU ops.

The emulator (``fusedlr.emulate``) builds the CUDA launch plan and runs the same
``sgd_block`` / ``adam_block`` / ``step_block`` bodies the ``__global__`` kernels call,
over every (block, thread). Here it must agree with ``torch.ops.fusedlr.sgd_update_`` /
``adam_update_`` (the CPU kernels) on the same inputs: odd sizes around the chunk size,
several groups, every flag, aligned and misaligned tensors, grad scaling and overflow
skips, and plans split across launches. ``launch_plan_stats`` checks int64 indexing for
tensors past 2**31 elements without allocating them.
"""

from __future__ import annotations

import pytest
import torch
from _plan_oracle import plan_oracle  # tests/_plan_oracle.py (pytest puts tests/ on sys.path)

import fusedlr
from fusedlr import emulate, ops, schedules

CPU = torch.device("cpu")
SIZES = (1, 7, 4097, 65537, 65536 * 2 + 5)
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
# Tolerances relative to the largest magnitude of each compared tensor. The emulator and the
# CPU kernels evaluate the same update.h expressions in the same order, so they are expected
# to agree to the last bit; the bounds are the numerics contract (float64 1e-12, float32 a
# few ulp, 16-bit one ulp of the stored type).
RTOL = {torch.float64: 1e-12, torch.float32: 4 * 2.0**-23, torch.bfloat16: 2.0**-8,
        torch.float16: 2.0**-11}
# (layout, grad scaler): misaligned = every pointer one element past 16 bytes, mixed = some
# pointers of a tensor misaligned; scale = grads divided by 1024, inf = found_inf set.
CASES = [("aligned", None), ("misaligned", "scale"), ("mixed", None), ("aligned", "inf"),
         ("mixed", "scale")]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The CPU ops' thread pool only costs time on a shared 2-core machine; results are
    independent of the split."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _rand(shape, dtype, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def _params(sizes, dtype, gen):
    return [_rand((n,), dtype, gen) for n in sizes]


def _sgd(params, dtype):
    groups = [
        dict(params=params[0::3], momentum=0.9, nesterov=True, weight_decay=1e-2,
             schedule=schedules.StepLR(step_size=1, gamma=0.5)),
        dict(params=params[1::3], momentum=0.5, dampening=0.25, maximize=True,
             schedule=schedules.CosineAnnealingLR(T_max=5)),
        dict(params=params[2::3], momentum=0.0, weight_decay=0.1),
    ]
    return fusedlr.SGD([g for g in groups if g["params"]], lr=0.05)


def _adam(params, dtype, cls=fusedlr.Adam):
    groups = [
        dict(params=params[0::3], amsgrad=True, weight_decay=0.1,
             schedule=schedules.LinearLR(start_factor=0.5, total_iters=4)),
        dict(params=params[1::3], betas=(0.8, 0.99), maximize=True, eps=1e-6),
        dict(params=params[2::3], amsgrad=True, betas=(0.3, 0.9),
             schedule=schedules.ExponentialLR(gamma=0.9)),
    ]
    return cls([g for g in groups if g["params"]], lr=1e-2)


def _prepare(kind, dtype, sizes, seed, steps_before=2):
    """An optimizer run for a few steps, fresh grads, and the op arguments of its next step."""
    gen = _gen(seed)
    params = _params(sizes, dtype, gen)
    opt = {"sgd": _sgd, "adam": _adam,
           "adamw": lambda p, d: _adam(p, d, fusedlr.AdamW)}[kind](params, dtype)
    for _ in range(steps_before):
        for p in params:
            p.grad = _rand(p.shape, dtype, gen)
        opt.step()
    for p in params:
        p.grad = _rand(p.shape, dtype, gen)
    ds = opt._devices[CPU]
    ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, ds.group_lr)
    call = opt._buckets[0].calls[None]
    tensors = [list(call.params), [p.grad for p in call.params], *map(list, call.lists),
               list(call.steps)]
    return tensors, call.meta, ds.hparams, ds.group_lr


def _placed(t, offset):
    """A contiguous copy of t whose data starts `offset` elements into its storage."""
    if t.dim() == 0:
        return t.clone()
    base = torch.empty(t.numel() + offset, dtype=t.dtype)
    return base[offset:].view(t.shape).copy_(t)


def _copy(tensors, layout):
    """A deep copy of the op's tensor lists; misaligned copies start 1 element past 16 bytes."""
    out = []
    for li, lst in enumerate(tensors):
        copied = []
        for ti, t in enumerate(lst):
            if layout == "aligned":
                off = 0
            elif layout == "misaligned":
                off = 1
            else:  # mixed: one list misaligned per tensor, so only some of its pointers are
                off = 1 if li == (ti % len(tensors)) else 0
            copied.append(_placed(t, off))
        out.append(copied)
    return out


def _scalers(mode):
    if mode == "scale":
        return torch.tensor(1024.0), torch.tensor(0.0)
    if mode == "inf":
        return torch.tensor(1024.0), torch.tensor(1.0)
    return None, None


def _run_both(kind, tensors, meta, hparams, group_lr, layout, scaler, **shape):
    scale, inf = _scalers(scaler)
    cpu, emu = _copy(tensors, "aligned"), _copy(tensors, layout)
    if kind == "sgd":
        ops.sgd_update_(*cpu, meta, hparams, group_lr, scale, inf)
        emulate.emulate_sgd_update_(*emu, meta, hparams, group_lr, scale, inf, **shape)
    else:
        ops.adam_update_(*cpu, meta, hparams, group_lr, scale, inf)
        emulate.emulate_adam_update_(*emu, meta, hparams, group_lr, scale, inf, **shape)
    return cpu, emu


MAX_ERR: dict = {}


def _assert_same(cpu, emu, dtype):
    """Every tensor agrees to RTOL[its dtype] relative to its largest magnitude."""
    for li, (a_list, b_list) in enumerate(zip(cpu, emu, strict=True)):
        for ti, (a, b) in enumerate(zip(a_list, b_list, strict=True)):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.numel() == 0 or torch.equal(a, b):
                continue
            a64, b64 = a.double(), b.double()
            scale = max(a64.abs().max().item(), 1e-30)
            err = (a64 - b64).abs().max().item() / scale
            MAX_ERR[a.dtype] = max(MAX_ERR.get(a.dtype, 0.0), err)
            assert err <= RTOL[a.dtype], f"list {li} tensor {ti} ({a.dtype}, {a.numel()}): {err}"


def _assert_updated(before, after, updated):
    """The large params moved (or, with found_inf set, nothing at all changed)."""
    if not updated:
        for b_list, a_list in zip(before, after, strict=True):
            for b, a in zip(b_list, a_list, strict=True):
                assert torch.equal(b, a)
        return
    for b, a in zip(before[0], after[0], strict=True):
        if b.numel() > 1000:
            assert not torch.equal(b, a)


@pytest.mark.parametrize("layout,scaler", CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sgd_matches_cpu(dtype, layout, scaler):
    tensors, meta, hparams, group_lr = _prepare("sgd", dtype, SIZES, seed=1)
    tensors[-1][0].zero_()  # a momentum buffer that starts from the grad (step 0)
    tensors[-1][3].zero_()
    cpu, emu = _run_both("sgd", tensors, meta, hparams, group_lr, layout, scaler)
    _assert_same(cpu, emu, dtype)
    _assert_updated(tensors, emu, scaler != "inf")


@pytest.mark.parametrize("layout,scaler", CASES)
@pytest.mark.parametrize("kind", ["adam", "adamw"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_adam_matches_cpu(dtype, kind, layout, scaler):
    tensors, meta, hparams, group_lr = _prepare(kind, dtype, SIZES, seed=2)
    cpu, emu = _run_both(kind, tensors, meta, hparams, group_lr, layout, scaler)
    _assert_same(cpu, emu, dtype)
    _assert_updated(tensors, emu, scaler != "inf")


SHAPES = [
    dict(max_tensors_per_launch=1),
    dict(max_tensors_per_launch=2, threads_per_block=100),
    dict(max_blocks_per_launch=1, threads_per_block=32),
    dict(max_tensors_per_launch=3, max_blocks_per_launch=2, threads_per_block=1024),
    dict(threads_per_block=1),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_split_plans_match_cpu(dtype, kind, shape):
    """Plans split across launches (and a tensor's chunks across launches) change nothing."""
    tensors, meta, hparams, group_lr = _prepare(kind, dtype, SIZES + (3, 65536), seed=3)
    cpu, emu = _run_both(kind, tensors, meta, hparams, group_lr, "mixed", "scale", **shape)
    _assert_same(cpu, emu, dtype)


@pytest.mark.parametrize("alias", ["same", "view"])
@pytest.mark.parametrize("runner", ["cpu", "emulator"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_shared_step_tensor_refused(kind, runner, alias):
    """Two entries of a direct op call sharing one step tensor (or a view of its memory) are
    refused before any write: the CUDA step pass advances steps without atomics, so one of
    the two increments would be lost."""
    tensors, meta, hparams, group_lr = _prepare(kind, torch.float32, (7, 4097, 3, 5), seed=6)
    steps = tensors[-1]
    steps[3] = steps[1] if alias == "same" else steps[1].view(1)[0]
    before = [[t.clone() for t in lst] for lst in tensors]
    if runner == "cpu":
        op = ops.sgd_update_ if kind == "sgd" else ops.adam_update_
    else:
        op = emulate.emulate_sgd_update_ if kind == "sgd" else emulate.emulate_adam_update_
    with pytest.raises(RuntimeError, match=r"steps\[1\] and steps\[3\] are the same tensor"):
        op(*tensors, meta, hparams, group_lr, torch.tensor(1024.0), None)
    for b_list, a_list in zip(before, tensors, strict=True):
        for b, a in zip(b_list, a_list, strict=True):
            assert torch.equal(b, a)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_many_small_tensors_and_empty(kind):
    """More tensors than one metadata block holds, with empty tensors among them."""
    gen = _gen(4)
    sizes = [int(n) for n in torch.randint(0, 300, (120,), generator=gen)] + [0, 5]
    tensors, meta, hparams, group_lr = _prepare(kind, torch.float32, sizes, seed=5)
    cpu, emu = _run_both(kind, tensors, meta, hparams, group_lr, "aligned", None)
    _assert_same(cpu, emu, torch.float32)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_steps_advance_once(kind):
    """A tensor spread over several launches still has its step advanced exactly once, after
    its update: Adam advances every step, SGD only those with a momentum buffer."""
    tensors, meta, hparams, group_lr = _prepare(kind, torch.float64, SIZES, seed=6)
    before = [s.item() for s in tensors[-1]]
    cpu, emu = _run_both(kind, tensors, meta, hparams, group_lr, "aligned", None,
                         max_blocks_per_launch=1)
    after = [s.item() for s in emu[-1]]
    slots = meta[:, 1].tolist()
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        advances = kind == "adam" or (slots[i] >= 0 and group_lr[meta[i, 0], 1].item() != 0)
        assert a == b + (1 if advances else 0), (i, b, a)
    _assert_same(cpu, emu, torch.float64)


def test_mixed_dtypes_in_one_call():
    """A call whose params have different dtypes runs one plan per dtype."""
    gen = _gen(7)
    tensors32, meta, hparams, group_lr = _prepare("adam", torch.float32, (7, 70000), seed=8)
    tensors = [[t.clone() for t in lst] for lst in tensors32]
    for li in range(4):  # param, grad, exp_avg, exp_avg_sq of tensor 1 become float64
        tensors[li][1] = tensors[li][1].double()
    tensors[0][1] = _rand((70000,), torch.float64, gen)
    tensors[1][1] = _rand((70000,), torch.float64, gen)
    slot = int(meta[1, 1])
    if slot >= 0:
        tensors[4][slot] = tensors[4][slot].double()
    cpu, emu = _run_both("adam", tensors, meta, hparams, group_lr, "misaligned", "scale")
    _assert_same(cpu, emu, torch.float64)


def test_emulator_rejects_bad_shape_before_writing():
    tensors, meta, hparams, group_lr = _prepare("sgd", torch.float32, (5,), seed=9)
    emu = _copy(tensors, "aligned")
    with pytest.raises(RuntimeError, match="threads_per_block"):
        emulate.emulate_sgd_update_(*emu, meta, hparams, group_lr, threads_per_block=0)
    _assert_same(tensors, emu, torch.float32)


def test_opcheck_emulate_adam():
    tensors, meta, hparams, group_lr = _prepare("adam", torch.float32, (3, 9), seed=10)
    args = (*tensors, meta, hparams, group_lr, None, None, 0, 64, 0)
    torch.library.opcheck(torch.ops.fusedlr.emulate_adam_update_.default, args,
                          test_utils=("test_schema", "test_faketensor"))


# ---------------------------------------------------------------------------------------------
# launch plans of huge tensors (nothing is allocated)


@pytest.mark.parametrize("large", [False, True], ids=["classic", "large"])
@pytest.mark.parametrize("numels,max_tensors", [
    ([2**31 + 7], 0),
    ([3 * 2**31], 0),
    ([1, 2**31 + 7, 0, 5, 3 * 2**31], 2),
    ([2**32 + 65536 * 3 + 1] + [7] * 40, 0),
    ([2**32 + 65536 * 3 + 1] + [7] * 900, 0),
])
def test_launch_plan_stats_int64(numels, max_tensors, large):
    stats = emulate.launch_plan_stats(numels, 4, max_tensors, large_args=large)
    biggest = max(numels)
    assert stats["max_element"] == biggest - 1 > 2**31
    assert stats["max_chunk"] == (biggest - 1) // 65536
    cap, blocks_cap, per_step = ((emulate.LARGE_ADAM_MAX_TENSORS, emulate.LARGE_MAX_BLOCKS,
                                  emulate.LARGE_STEP_TENSORS) if large else
                                 (emulate.ADAM_MAX_TENSORS, emulate.MAX_BLOCKS,
                                  emulate.STEP_TENSORS))
    launches, blocks = plan_oracle(numels, max_tensors or cap, blocks_cap)
    assert stats["blocks"] == blocks == sum(-(-n // 65536) for n in numels)
    assert stats["launches"] == launches
    assert stats["step_launches"] == -(-len(numels) // per_step)
    assert stats["launches_per_step"] == 2 + launches + stats["step_launches"]


def test_launch_plan_stats_small():
    stats = emulate.launch_plan_stats([65536, 65537, 1], 2, 0)
    assert stats == {"launches": 1, "blocks": 4, "max_chunk": 1, "max_element": 65536,
                     "step_launches": 1, "launches_per_step": 4}
    stats = emulate.launch_plan_stats([5] * 100, 8, 10)
    assert stats["launches"] == 10 and stats["blocks"] == 100
    assert emulate.launch_plan_stats([], 4, 0)["launches"] == 0
    with pytest.raises(RuntimeError, match="elem_size"):
        emulate.launch_plan_stats([1], 3, 0)


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_float64_grad_scale_is_read_in_float64(kind, sign):
    """The clipping path folds its coefficient into a float64 grad_scale (``S / coef``, or
    ``-1 / coef``: divide without writing the grads back). The kernel body reads it in float64:
    on float64 params the emulator agrees with the CPU op to 1e-12, and differs from a run
    given the same scale rounded to float32 (what the CUDA kernels read before)."""
    tensors, meta, hparams, group_lr = _prepare(kind, torch.float64, SIZES, seed=5)
    coef = float(torch.empty(()).uniform_(0.2, 0.9, generator=_gen(int(sign) + 7)))
    scale = torch.tensor(sign * 1024.0 / coef, dtype=torch.float64)
    assert float(scale.float()) != float(scale)
    inf = torch.tensor(0.0)
    cpu, emu, emu32 = (_copy(tensors, "aligned") for _ in range(3))
    if kind == "sgd":
        ops.sgd_update_(*cpu, meta, hparams, group_lr, scale, inf)
        emulate.emulate_sgd_update_(*emu, meta, hparams, group_lr, scale, inf)
        emulate.emulate_sgd_update_(*emu32, meta, hparams, group_lr, scale.float(), inf)
    else:
        ops.adam_update_(*cpu, meta, hparams, group_lr, scale, inf)
        emulate.emulate_adam_update_(*emu, meta, hparams, group_lr, scale, inf)
        emulate.emulate_adam_update_(*emu32, meta, hparams, group_lr, scale.float(), inf)
    _assert_same(cpu, emu, torch.float64)
    assert any(not torch.equal(a, b) for a, b in zip(emu[0], emu32[0], strict=True))
    # a negative scale leaves the grads as they were; a positive one writes them back divided
    grads_changed = [not torch.equal(a, b) for a, b in zip(emu[1], tensors[1], strict=True)]
    assert any(grads_changed) == (sign > 0)
