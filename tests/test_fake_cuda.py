"""The host side of the CUDA path, run on the CPU against a fake CUDA runtime.

``csrc/fake_cuda`` compiles ``csrc/cuda/kernels.cu`` and ``csrc/cuda/update_cuda.cpp`` with the
host compiler and ``FUSEDLR_FAKE_CUDA``: every kernel launch goes through ``FUSEDLR_LAUNCH``
(``csrc/cuda/launch_point.h``), which records (kernel, grid, block, smem, stream, parameter bytes)
and runs the ``__global__`` function over every (block, thread) on the CPU. The launchers
(``torch.ops.fusedlr_fake_cuda.*``: argument checks, pointer tables, type switch, launch loop, error
checks) then run on CPU tensors, and are checked here against the CPU ops (the results), against
``launch_plan_stats`` and an independent plan count (the launches), and with injected launch
errors (error propagation). Built only where the CUDA toolkit's headers are found.
"""

from __future__ import annotations

import math

import pytest
import torch
from _plan_oracle import plan_oracle  # tests/_plan_oracle.py (pytest puts tests/ on sys.path)

import fusedlr
from fusedlr import emulate, ops, schedules

_ops = torch.ops.fusedlr_fake_cuda
HAVE_FAKE = hasattr(_ops, "sgd_update_")
pytestmark = pytest.mark.skipif(
    not HAVE_FAKE, reason="fusedlr was built without the fake runtime (toolkit headers not found)"
)

CPU = torch.device("cpu")
FIELDS = ("kernel", "gx", "gy", "gz", "bx", "by", "bz", "smem", "stream", "param_bytes", "result")
SGD, ADAM, STEP, EVAL = 0, 1, 2, 3
STREAM = 0x5EED00
CHUNK = emulate.CHUNK_SIZE
ELEM = {torch.float32: 4, torch.float64: 8, torch.float16: 2, torch.bfloat16: 2}
RTOL = {torch.float64: 1e-12, torch.float32: 4 * 2.0**-23, torch.bfloat16: 2.0**-8,
        torch.float16: 2.0**-11}


# The two kernel-argument layouts (multi_tensor.h): the device of the fake runtime takes 32 KB
# kernel parameters ("large", what CUDA 12.1+ on compute capability 7.0+ gives) or only the
# classic 4 KB ("classic": launches past 4096 bytes fail, as on older toolkits and devices).
LAYOUTS = {
    "large": dict(large=True, param_bytes=32764, sgd=emulate.LARGE_SGD_MAX_TENSORS,
                  adam=emulate.LARGE_ADAM_MAX_TENSORS, blocks=emulate.LARGE_MAX_BLOCKS,
                  steps=emulate.LARGE_STEP_TENSORS),
    "classic": dict(large=False, param_bytes=4096, sgd=emulate.SGD_MAX_TENSORS,
                    adam=emulate.ADAM_MAX_TENSORS, blocks=emulate.MAX_BLOCKS,
                    steps=emulate.STEP_TENSORS),
}
LAYOUT = dict(LAYOUTS["large"])  # the running test's layout (set by the _args_layout fixture)


@pytest.fixture(autouse=True, params=list(LAYOUTS))
def _args_layout(request):
    LAYOUT.clear()
    LAYOUT.update(LAYOUTS[request.param], name=request.param)
    yield request.param


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
    if HAVE_FAKE:
        _ops.reset(0, -1, 0)


def _reset(fail_at=-1, code=0, attribute_error=0, max_threads=1024, attribute_fail_at=0):
    _ops.reset(STREAM, fail_at, code, attribute_error, max_threads, attribute_fail_at,
               LAYOUT["param_bytes"], LAYOUT["large"])


def _many(kind):
    """More tiny tensors than one launch of the running layout holds."""
    return (3,) * (LAYOUT["sgd" if kind == "sgd" else "adam"] + 14)


def _launches():
    flat = _ops.launches()
    return [dict(zip(FIELDS, flat[i:i + len(FIELDS)], strict=True))
            for i in range(0, len(flat), len(FIELDS))]


def _rand(shape, dtype, gen):
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)


def _prepare(kind, dtypes, sizes, seed, momentum=0.9):
    """An optimizer stepped twice, fresh grads, and the op arguments of its next step."""
    gen = torch.Generator().manual_seed(seed)
    params = [_rand((n,), dtypes[i % len(dtypes)], gen) for i, n in enumerate(sizes)]
    if kind == "sgd":
        groups = [dict(params=params[0::2], momentum=momentum, nesterov=momentum > 0,
                       weight_decay=1e-2, schedule=schedules.StepLR(step_size=1, gamma=0.5)),
                  dict(params=params[1::2], momentum=0.0, maximize=True)]
        opt = fusedlr.SGD([g for g in groups if g["params"]], lr=0.05)
    else:
        cls = fusedlr.AdamW if kind == "adamw" else fusedlr.Adam
        groups = [dict(params=params[0::2], amsgrad=True, weight_decay=0.1,
                       schedule=schedules.LinearLR(start_factor=0.5, total_iters=4)),
                  dict(params=params[1::2], betas=(0.8, 0.99), maximize=True)]
        opt = cls([g for g in groups if g["params"]], lr=1e-2)
    for _ in range(2):
        for p in params:
            p.grad = _rand(p.shape, p.dtype, gen)
        opt.step()
    for p in params:
        p.grad = _rand(p.shape, p.dtype, gen)
    ds = opt._devices[CPU]
    ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, ds.group_lr)
    assert len(opt._buckets) == 1
    call = opt._buckets[0].calls[None]
    tensors = [list(call.params), [p.grad for p in call.params], *map(list, call.lists),
               list(call.steps)]
    return tensors, call.meta, ds.hparams, ds.group_lr


def _copy(tensors):
    """Copies that keep each tensor's storage offset (so a misaligned one stays misaligned)."""
    return [[_placed(t, t.storage_offset()) if t.dim() > 0 else t.clone() for t in lst]
            for lst in tensors]


def _placed(t, offset):
    """A contiguous copy of t whose data starts `offset` elements into its storage."""
    base = torch.empty(t.numel() + offset, dtype=t.dtype)
    return base[offset:].view(t.shape).copy_(t)


def _run_both(kind, tensors, meta, hparams, group_lr, scale=None, inf=None):
    cpu, fake = _copy(tensors), _copy(tensors)
    op, fake_op = ((ops.sgd_update_, _ops.sgd_update_) if kind == "sgd"
                   else (ops.adam_update_, _ops.adam_update_))
    op(*cpu, meta, hparams, group_lr, scale, inf)
    _reset()
    fake_op(*fake, meta, hparams, group_lr, scale, inf)
    return cpu, fake, _launches()


def _assert_same(cpu, fake):
    for li, (a_list, b_list) in enumerate(zip(cpu, fake, strict=True)):
        for ti, (a, b) in enumerate(zip(a_list, b_list, strict=True)):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.numel() == 0 or torch.equal(a, b):
                continue
            a64, b64 = a.double(), b.double()
            err = (a64 - b64).abs().max().item() / max(a64.abs().max().item(), 1e-30)
            assert err <= RTOL[a.dtype], f"list {li} tensor {ti} ({a.dtype}, {a.numel()}): {err}"


def _check_launches(kind, params, launches, n_steps):
    """Update launches per dtype as planned in the running layout, then the step launches, all
    on the stream and within the layout's parameter limit."""
    update_id = SGD if kind == "sgd" else ADAM
    max_tensors = LAYOUT["sgd" if kind == "sgd" else "adam"]
    want_launches = want_blocks = 0
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        numels = [p.numel() for p in params if p.dtype == dtype]
        if not numels:
            continue
        n_launch, n_blocks = plan_oracle(numels, max_tensors, LAYOUT["blocks"])
        if kind != "sgd":
            stats = emulate.launch_plan_stats(numels, ELEM[dtype], 0, large_args=LAYOUT["large"])
            assert (stats["launches"], stats["blocks"]) == (n_launch, n_blocks)
            assert stats["step_launches"] == math.ceil(len(numels) / LAYOUT["steps"])
        want_launches += n_launch
        want_blocks += n_blocks
    update = [r for r in launches if r["kernel"] == update_id]
    step = [r for r in launches if r["kernel"] == STEP]
    assert len(update) + len(step) == len(launches)
    assert launches[:len(update)] == update, "every update launch precedes the step launches"
    assert len(update) == want_launches
    assert sum(r["gx"] for r in update) == want_blocks
    assert len(step) == math.ceil(n_steps / LAYOUT["steps"])
    for r in launches:
        assert r["stream"] == STREAM and r["smem"] == 0 and r["result"] == 0
        assert (r["gy"], r["gz"], r["by"], r["bz"]) == (1, 1, 1, 1)
        assert 0 < r["param_bytes"] <= LAYOUT["param_bytes"], r
        # the classic layout's arguments fit 4 KB; the large one's need more than 4 KB
        assert (r["param_bytes"] > 4096) == LAYOUT["large"], r
    for r in update:
        assert 1 <= r["gx"] <= LAYOUT["blocks"] and r["bx"] == emulate.BLOCK_THREADS
        assert r["param_bytes"] == update[0]["param_bytes"]
    for r in step:
        assert r["bx"] == 256
        assert r["gx"] <= math.ceil(LAYOUT["steps"] / 256)


SIZES = (1, 7, 4097, 65537, 65536 * 2 + 5)


@pytest.mark.parametrize("dtype", list(ELEM), ids=str)
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_launcher_matches_cpu(kind, dtype):
    """More tensors than one launch holds: results as the CPU op, launches as planned."""
    sizes = SIZES + _many(kind)
    tensors, meta, hparams, group_lr = _prepare(kind, [dtype], sizes, seed=1)
    scale, inf = torch.tensor(1024.0), torch.tensor(0.0)
    cpu, fake, launches = _run_both(kind, tensors, meta, hparams, group_lr, scale, inf)
    _assert_same(cpu, fake)
    assert not torch.equal(fake[0][4], tensors[0][4])
    _check_launches(kind, tensors[0], launches, len(sizes))
    guards, queries, cleared = _ops.counters()
    assert (guards, queries, cleared) == (1, 2, 0)  # check_update_kernels: update + step kernel


@pytest.mark.parametrize("layout", ["misaligned", "mixed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_misaligned_tensors(kind, dtype, layout):
    """Pointers 1 element past 16 bytes (all of a tensor's, or one list's): the launcher's
    aligned flag keeps them off the vector path (a vector access there would fault, or be an
    alignment report under tools/sanitize.sh); results as the CPU op's."""
    tensors, meta, hparams, group_lr = _prepare(kind, [dtype], SIZES + _many(kind), seed=9)
    moved = [[_placed(t, 1 if layout == "misaligned" or li == ti % len(tensors) else 0)
              if t.dim() > 0 else t.clone() for ti, t in enumerate(lst)]
             for li, lst in enumerate(tensors)]
    cpu, fake, launches = _run_both(kind, moved, meta, hparams, group_lr)
    assert fake[0][4].data_ptr() % 16 != 0 or layout == "mixed"
    assert any(t.data_ptr() % 16 != 0 for lst in fake for t in lst if t.dim() > 0)
    _assert_same(cpu, fake)
    _check_launches(kind, tensors[0], launches, len(tensors[0]))


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_mixed_dtypes_one_plan_per_dtype(kind):
    """The launcher's type switch: a call with params of four dtypes runs one plan per dtype."""
    sizes = (5, 4097, 70000, 9, 3, 1, 65536, 12)
    tensors, meta, hparams, group_lr = _prepare(kind, [torch.float32], sizes, seed=2)
    tensors = _copy(tensors)
    gen = torch.Generator().manual_seed(12)
    for i in range(len(sizes)):
        dtype = (torch.float32, torch.float64, torch.float16, torch.bfloat16)[i % 4]
        n = tensors[0][i].numel()  # (the call orders params by group)
        tensors[0][i] = _rand((n,), dtype, gen)
        tensors[1][i] = _rand((n,), dtype, gen)
        if dtype == torch.float64:  # states in the opmath type
            slot = int(meta[i, 1])
            state_lists = [] if kind == "sgd" else [2, 3]  # SGD: buffers by slot
            for li in state_lists:
                tensors[li][i] = tensors[li][i].double()
            if slot >= 0:
                li = 2 if kind == "sgd" else 4
                tensors[li][slot] = tensors[li][slot].double()
    cpu, fake, launches = _run_both(kind, tensors, meta, hparams, group_lr)
    _assert_same(cpu, fake)
    _check_launches(kind, tensors[0], launches, len(sizes))
    assert len([r for r in launches if r["kernel"] in (SGD, ADAM)]) == 4


def test_more_steps_than_one_step_launch_advance_once():
    n = LAYOUT["steps"] + 44
    tensors, meta, hparams, group_lr = _prepare("adam", [torch.float32], (2,) * n, seed=3)
    before = torch.stack(tensors[-1]).clone()
    cpu, fake, launches = _run_both("adam", tensors, meta, hparams, group_lr)
    assert torch.equal(torch.stack(fake[-1]), before + 1)
    _assert_same(cpu, fake)
    _check_launches("adam", tensors[0], launches, n)
    assert len([r for r in launches if r["kernel"] == STEP]) == 2


def test_tensor_continues_into_next_launch():
    """More chunks than one launch holds: the second tensor's chunks are split over two
    launches (classic: 320 blocks a launch; large: 1280)."""
    if LAYOUT["large"]:
        sizes, want = (1000 * CHUNK + 3, 300 * CHUNK), [1280, 21]
    else:
        sizes, want = (170 * CHUNK + 3, 160 * CHUNK), [320, 11]
    tensors, meta, hparams, group_lr = _prepare("sgd", [torch.bfloat16], sizes, seed=4,
                                                momentum=0.0)
    cpu, fake, launches = _run_both("sgd", tensors, meta, hparams, group_lr)
    _assert_same(cpu, fake)
    update = [r for r in launches if r["kernel"] == SGD]
    assert [r["gx"] for r in update] == want
    _check_launches("sgd", tensors[0], launches, 2)


@pytest.mark.parametrize(("kind", "count", "size", "most"), [
    ("adam", 2000, 64, 12), ("adam", 400, 256, 6), ("sgd", 2000, 64, 12)])
def test_launches_per_step(kind, count, size, most):
    """Every launch of a steady-state fp32 step of `count` x `size` tensors (issue 14's targets
    for Adam: 2000 x 64 in at most 12 launches, 400 x 256 in at most 6): the schedule
    evaluation, the update and step launches as recorded, and the counter's add. The classic
    4 KB layout (the fallback) is counted too, as the plan says, with no target."""
    tensors, meta, hparams, group_lr = _prepare(kind, [torch.float32], (size,) * count, seed=21)
    fake = _copy(tensors)
    _reset()
    fake_op = _ops.sgd_update_ if kind == "sgd" else _ops.adam_update_
    fake_op(*fake, meta, hparams, group_lr, None, None)
    launches = _launches()
    _check_launches(kind, tensors[0], launches, count)
    total = 1 + len(launches) + 1  # eval_schedule_ before, the counter's add_ after
    stats = emulate.launch_plan_stats((size,) * count, 4, large_args=LAYOUT["large"])
    if kind != "sgd":
        assert total == stats["launches_per_step"]
    if LAYOUT["large"]:
        assert total <= most, launches
    else:
        assert total > most  # what the 32 KB layout saves


def test_large_arguments_refused_past_4096_bytes():
    """A device that takes only 4 KB parameters but answers the 32 KB query yes: the launch
    fails as the runtime's does and the op raises (the query is what keeps the large layout
    off such devices)."""
    if not LAYOUT["large"]:
        pytest.skip("the large layout only")
    tensors, meta, hparams, group_lr = _prepare("adam", [torch.float32], SIZES, seed=22)
    fake = _copy(tensors)
    _ops.reset(STREAM, -1, 0, 0, 1024, 0, 4096, True)
    with pytest.raises(RuntimeError, match="adam_update_: CUDA launch failed: invalid argument"):
        _ops.adam_update_(*fake, meta, hparams, group_lr, None, None)
    (r,) = _launches()
    assert r["param_bytes"] > 4096


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_launch_error_raises_and_stops(fail_at):
    """An injected launch error raises with the runtime's message; no launch follows it."""
    sizes = SIZES + _many("adam")  # Adam: 2 update launches, then 1 step launch
    tensors, meta, hparams, group_lr = _prepare("adam", [torch.float32], sizes, seed=5)
    fake = _copy(tensors)
    _reset(fail_at, 999)
    with pytest.raises(RuntimeError, match="adam_update_: CUDA launch failed: injected error"):
        _ops.adam_update_(*fake, meta, hparams, group_lr, None, None)
    launches = _launches()
    assert len(launches) == fail_at + 1
    assert [r["result"] for r in launches] == [0] * fail_at + [999]
    if fail_at == 0:  # nothing ran
        for a_list, b_list in zip(tensors, fake, strict=True):
            assert all(torch.equal(a, b) for a, b in zip(a_list, b_list, strict=True))


@pytest.mark.parametrize("case", ["no kernel image", "thread limit", "last dtype"])
def test_unlaunchable_kernel_refused_before_any_launch(case):
    """check_update_kernels runs for every dtype of the call before its first launch: a kernel
    that cannot be loaded (209: no kernel image) or admits fewer threads than the launch shape
    is refused with nothing launched or written, and the error is cleared."""
    tensors, meta, hparams, group_lr = _prepare("adam", [torch.float32], SIZES, seed=13)
    tensors = _copy(tensors)
    gen = torch.Generator().manual_seed(13)
    for i, dtype in enumerate((torch.float32, torch.float16, torch.bfloat16)):  # (states float)
        tensors[0][i] = _rand((tensors[0][i].numel(),), dtype, gen)
        tensors[1][i] = _rand((tensors[0][i].numel(),), dtype, gen)
    fake = _copy(tensors)
    if case == "no kernel image":
        _reset(-1, 0, 209, 1024, 0)
        match = "CUDA launch failed: injected error"
    elif case == "thread limit":
        _reset(-1, 0, 0, emulate.BLOCK_THREADS - 1, 0)
        match = "CUDA launch failed: invalid configuration argument"
    else:  # the third dtype's update kernel (queries: 2 per dtype)
        _reset(-1, 0, 209, 1024, 4)
        match = "CUDA launch failed: injected error"
    with pytest.raises(RuntimeError, match=match):
        _ops.adam_update_(*fake, meta, hparams, group_lr, None, None)
    assert _launches() == []
    assert _ops.counters()[2] == 1  # the error was cleared
    for a_list, b_list in zip(tensors, fake, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(a_list, b_list, strict=True))


def test_rejected_call_launches_nothing():
    tensors, meta, hparams, group_lr = _prepare("sgd", [torch.float32], (5, 6), seed=6)
    fake = _copy(tensors)
    fake[1][0] = fake[1][0][:3]  # grad of the wrong size
    _reset()
    with pytest.raises(RuntimeError):
        _ops.sgd_update_(*fake, meta, hparams, group_lr, None, None)
    assert _launches() == []


def test_eval_schedule_launch():
    """One thread per group: 70 groups are 2 blocks of 64; lr as the CPU op computes it."""
    gen = torch.Generator().manual_seed(7)
    groups = [dict(params=[_rand((3,), torch.float32, gen)], lr=0.01 * (i + 1),
                   schedule=schedules.CosineAnnealingLR(T_max=10 + i)) for i in range(70)]
    opt = fusedlr.SGD(groups, lr=0.1, momentum=0.9)
    for _ in range(3):
        for g in groups:
            g["params"][0].grad = _rand((3,), torch.float32, gen)
        opt.step()
    ds = opt._devices[CPU]
    want, got = ds.group_lr.clone(), torch.full_like(ds.group_lr, float("nan"))
    ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, want)
    _reset()
    _ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, got)
    assert torch.equal(got, want)
    (r,) = _launches()
    assert (r["kernel"], r["gx"], r["bx"], r["stream"]) == (EVAL, 2, 64, STREAM)
    assert r["param_bytes"] == 6 * 8  # five pointers and an int64


# ---------------------------------------------------------------------------------------------
# schedule-free launchers (schedule_free_cuda.cpp, schedule_free_kernels.cu)

SF_UPDATE, SF_PREPARE = 4, 5


def _sf_rows(adam, rng):
    """hparams of three groups and a state row after a few scalar passes."""
    from fusedlr.schedule_free import GROUP_FIELDS, STATE_FIELDS

    hp = torch.zeros(3, GROUP_FIELDS, dtype=torch.float64)
    for g in range(3):
        hp[g, 0] = 10 ** rng.uniform(-3, -1)  # lr
        hp[g, 1] = rng.choice([0.0, 0.01])  # weight decay
        hp[g, 2] = rng.uniform(0.5, 0.95)  # momentum / beta1
        hp[g, 3] = rng.uniform(0.9, 0.999) if adam else 0.0  # beta2
        hp[g, 4] = 1e-8 if adam else 0.0
        hp[g, 9], hp[g, 10], hp[g, 11] = 1.0, -1.0, 1.0
        hp[g, 12] = rng.choice([0.0, 5.0])
        hp[g, 13] = rng.choice([0.0, 1.0])
        hp[g, 14] = 2.0
    state = torch.zeros(3, STATE_FIELDS, dtype=torch.float64)
    state[:, 1] = -1.0
    program = torch.zeros(0, dtype=torch.float64)
    for _ in range(3):
        ops.schedule_free_prepare_(program, hp, state)
    return program, hp, state


@pytest.mark.parametrize("operation", [0, 1, 2], ids=["update", "train", "eval"])
@pytest.mark.parametrize("adam", [False, True], ids=["SGD", "AdamW"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_schedule_free_launcher_matches_cpu(dtype, adam, operation):
    import random

    rng = random.Random(11)
    gen = torch.Generator().manual_seed(11)
    program, hp, state = _sf_rows(adam, rng)
    sizes = SIZES + (3,) * 45  # more tensors than one launch holds
    params = [_rand((n,), dtype, gen) for n in sizes]
    grads = [_rand((n,), dtype, gen) for n in sizes]
    zs = [_rand((n,), dtype, gen) for n in sizes]
    vs = [_rand((n,), dtype, gen).abs() for n in sizes] if adam else []
    groups = torch.tensor([i % 3 for i in range(len(sizes))], dtype=torch.int64)
    ref, fake = _copy([params, zs, vs]), _copy([params, zs, vs])
    ref_state, fake_state = state.clone(), state.clone()
    _reset()
    if operation == 0:
        ops.schedule_free_update_(ref[0], grads, ref[1], ref[2], groups, program, hp, ref_state)
        _ops.schedule_free_update_(fake[0], grads, fake[1], fake[2], groups, program, hp,
                                   fake_state)
    else:
        ops.schedule_free_swap_(ref[0], ref[1], groups, hp, operation == 1)
        _ops.schedule_free_swap_(fake[0], fake[1], groups, hp, operation == 1)
    assert torch.equal(fake_state, ref_state)
    for a_list, b_list in zip(ref, fake, strict=True):  # the same math as the CPU op: bit for bit
        for a, b in zip(a_list, b_list, strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
    launches = _launches()
    if operation == 0:
        assert (launches[0]["kernel"], launches[0]["gx"], launches[0]["bx"]) == (SF_PREPARE, 1, 64)
        launches = launches[1:]
    want = plan_oracle(sizes, emulate.SCHEDULE_FREE_MAX_TENSORS)
    assert all(r["kernel"] == SF_UPDATE and r["bx"] == emulate.BLOCK_THREADS for r in launches)
    assert (len(launches), sum(r["gx"] for r in launches)) == want
    assert all(r["stream"] == STREAM and r["result"] == 0 for r in launches)


def test_schedule_free_launch_error():
    import random

    program, hp, state = _sf_rows(True, random.Random(12))
    params = [torch.ones(5), torch.ones(7)]
    _reset(0, 999)  # the scalar pass fails: the update is not launched
    with pytest.raises(RuntimeError, match="schedule_free_update_: CUDA launch failed"):
        _ops.schedule_free_update_(params, [torch.ones(5), torch.ones(7)], _copy([params])[0],
                                   [torch.ones(5), torch.ones(7)], torch.tensor([0, 1]), program,
                                   hp, state)
    assert [r["kernel"] for r in _launches()] == [SF_PREPARE]
    assert all(torch.equal(p, torch.ones_like(p)) for p in params)


# ---------------------------------------------------------------------------------------------
# master_weights in one pass (sgd_update_master_ / adam_update_master_ launchers)

MASTER_SGD, MASTER_ADAM = 6, 7


def _master_call(kind, dtype, sizes, seed):
    """A master_weights optimizer on 16-bit params after two steps, fresh grads, and its call."""
    gen = torch.Generator().manual_seed(seed)
    params = [_rand((n,), dtype, gen) for n in sizes]
    if kind == "sgd":
        opt = fusedlr.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-2, master_weights=True,
                          schedule=schedules.StepLR(step_size=1, gamma=0.5))
    else:
        opt = fusedlr.AdamW(params, lr=1e-2, amsgrad=True, master_weights=True,
                            schedule=schedules.LinearLR(start_factor=0.5, total_iters=4))
    for _ in range(2):
        for p in params:
            p.grad = _rand(p.shape, dtype, gen)
        opt.step()
    for p in params:
        p.grad = _rand(p.shape, dtype, gen)
    ds = opt._devices[CPU]
    ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, ds.group_lr)
    call = opt._buckets[0].calls[None]
    assert call.one_pass
    return call, ds


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_master_launcher_equals_three_pass_launches(kind, dtype):
    """The one-pass master kernels on the fake runtime against the three-pass path through the
    same runtime (float32 copies of the grads, the float32 kernels, the masters rounded to the
    params): bit for bit; launches as planned for depth 4 (SGD) / 6 (Adam)."""
    call, ds = _master_call(kind, dtype, SIZES + _many(kind), seed=31)
    grads = [p.grad for p in call.sources]
    one = _copy([list(call.params), *map(list, call.lists), list(call.steps),
                 list(call.sources)])
    three = _copy([list(call.params), *map(list, call.lists), list(call.steps),
                   list(call.sources)])
    _reset()
    if kind == "sgd":
        _ops.sgd_update_master_(one[0], grads, one[1], one[2], one[3], call.meta, ds.hparams,
                                ds.group_lr, None, None)
    else:
        _ops.adam_update_master_(one[0], grads, one[1], one[2], one[3], one[4], one[5],
                                 call.meta, ds.hparams, ds.group_lr, None, None)
    launches = _launches()
    g32 = [g.float() for g in grads]
    _reset()
    if kind == "sgd":
        _ops.sgd_update_(three[0], g32, three[1], three[2], call.meta, ds.hparams, ds.group_lr,
                         None, None)
    else:
        _ops.adam_update_(three[0], g32, three[1], three[2], three[3], three[4], call.meta,
                          ds.hparams, ds.group_lr, None, None)
    for low, master in zip(three[-1], three[0], strict=True):
        low.copy_(master)
    for a_list, b_list in zip(one, three, strict=True):
        for a, b in zip(a_list, b_list, strict=True):
            assert torch.equal(a, b)
    master_id, depth_cap = ((MASTER_SGD, {"large": 448, "classic": 40}) if kind == "sgd"
                            else (MASTER_ADAM, {"large": 320, "classic": 32}))
    update = [r for r in launches if r["kernel"] == master_id]
    want = plan_oracle([p.numel() for p in call.params], depth_cap[LAYOUT["name"]],
                       LAYOUT["blocks"])
    assert (len(update), sum(r["gx"] for r in update)) == want and len(update) >= 2
    assert all(r["param_bytes"] <= LAYOUT["param_bytes"] and r["result"] == 0 for r in launches)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_float64_grad_scale_reaches_the_kernel(kind, sign):
    """A float64 grad_scale (the clipping path's folded coefficient) travels as float64 through
    the launcher to the kernels: float64 params as the CPU op to 1e-12, and not as a run given
    the scale rounded to float32; a float32 scale (a GradScaler's) still works as before."""
    tensors, meta, hparams, group_lr = _prepare(kind, [torch.float64], SIZES, seed=4)
    scale = torch.tensor(sign * 1024.0 / 0.37123456789, dtype=torch.float64)
    inf = torch.tensor(0.0)
    cpu, fake, _ = _run_both(kind, tensors, meta, hparams, group_lr, scale, inf)
    _assert_same(cpu, fake)
    cpu32, fake32, _ = _run_both(kind, tensors, meta, hparams, group_lr, scale.float(), inf)
    _assert_same(cpu32, fake32)
    assert any(not torch.equal(a, b) for a, b in zip(fake[0], fake32[0], strict=True))


@pytest.mark.parametrize("scale", [8.0, -2.6875, 21.55], ids=["f32", "f32neg", "f64"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_master_launcher_with_a_scale_leaves_grads_and_matches_cpu(kind, scale):
    """The one-pass master kernels with a grad scale (positive: a GradScaler's, which the
    regular kernels write back divided; negative: the clip path's; float64: a clip coefficient)
    never write the 16-bit grads, and give what the CPU master op gives, bit for bit."""
    call, ds = _master_call(kind, torch.bfloat16, SIZES + _many(kind), seed=33)
    grads = [p.grad for p in call.sources]
    before = [g.clone() for g in grads]
    dt = torch.float64 if scale == 21.55 else torch.float32
    gs, inf = torch.tensor(scale, dtype=dt), torch.tensor(0.0)
    lists = [list(call.params), *map(list, call.lists), list(call.steps), list(call.sources)]
    fake, cpu = _copy(lists), _copy(lists)
    for op_ns, out in ((_ops, fake), (ops, cpu)):
        if op_ns is _ops:
            _reset()
        if kind == "sgd":
            op_ns.sgd_update_master_(out[0], grads, out[1], out[2], out[3], call.meta,
                                     ds.hparams, ds.group_lr, gs, inf)
        else:
            op_ns.adam_update_master_(out[0], grads, out[1], out[2], out[3], out[4], out[5],
                                      call.meta, ds.hparams, ds.group_lr, gs, inf)
    assert all(torch.equal(a, b) for a, b in zip(grads, before, strict=True))
    for a_list, b_list in zip(fake, cpu, strict=True):
        for a, b in zip(a_list, b_list, strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(fake[0][4], lists[0][4])  # the masters moved
