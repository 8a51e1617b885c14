"""fusedlr's CUDA kernels on a real GPU against torch.optim + torch.optim.lr_scheduler.

Skipped (with the reason) where no CUDA device is available or the extension was built
without CUDA kernels. No machine of this project has a GPU, so these run on a GPU box only.
"""

from __future__ import annotations

import pytest
import torch

import fusedlr
from fusedlr import _C, emulate, ops, schedules

pytestmark = [
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"
    ),
    pytest.mark.skipif(
        not _C.cuda_compiled(), reason="fusedlr was built without CUDA kernels (FUSEDLR_CUDA=0)"
    ),
]

SIZES = (1, 7, 4097, 65537, 65536 * 2 + 5)
STEPS = 8
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _params(dtype, device, seed, offset=0):
    """Params of SIZES; with offset=1 each starts one element past a 16-byte boundary."""
    gen = torch.Generator().manual_seed(seed)
    return [
        _place(torch.randn(n, generator=gen, dtype=torch.float64), device, dtype, offset)
        for n in SIZES
    ]


def _place(values, device, dtype, offset):
    storage = torch.empty(values.numel() + offset, device=device, dtype=dtype)
    return storage[offset:].view(values.shape).copy_(values)


def _fresh(params):
    """Copies that keep each param's alignment (storage offset)."""
    return [
        _place(p.detach().cpu().double(), p.device, p.dtype, p.storage_offset() % 2) for p in params
    ]


def _grads(params, step, seed):
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    return [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p) for p in params]


def _run_torch(kind, params, steps, seed, **kw):
    params = _fresh(params)
    if kind == "sgd":
        opt = torch.optim.SGD(
            params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, foreach=False
        )
    else:
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        opt = cls(params, lr=1e-2, weight_decay=0.1, amsgrad=True, foreach=False, **kw)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for t in range(steps):
        for p, g in zip(params, _grads(params, t, seed), strict=True):
            p.grad = g
        opt.step()
        sched.step()
    return params


def _run_fused(kind, params, steps, seed, **kw):
    params = _fresh(params)
    schedule = schedules.StepLR(step_size=2, gamma=0.5)
    if kind == "sgd":
        opt = fusedlr.SGD(
            params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, schedule=schedule
        )
    else:
        cls = fusedlr.AdamW if kind == "adamw" else fusedlr.Adam
        opt = cls(params, lr=1e-2, weight_decay=0.1, amsgrad=True, schedule=schedule, **kw)
    for t in range(steps):
        for p, g in zip(params, _grads(params, t, seed), strict=True):
            p.grad = g
        opt.step()
    return params, opt


@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_matches_torch_optim(dtype, kind, offset):
    params = _params(dtype, "cuda", seed=1, offset=offset)
    expected = _run_torch(kind, params, STEPS, seed=1)
    got, _ = _run_fused(kind, params, STEPS, seed=1)
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, **TOL[dtype])


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_low_precision_matches_cpu_kernels(dtype, kind):
    """16-bit params (float32 state): CUDA agrees with fusedlr's CPU kernels."""
    params = _params(dtype, "cpu", seed=2)
    cpu, _ = _run_fused(kind, params, STEPS, seed=2)
    gpu, _ = _run_fused(kind, [p.cuda() for p in params], STEPS, seed=2)
    for c, g in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(g.cpu(), c, rtol=2e-2, atol=1e-2)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_kernel_matches_emulator(kind):
    """One op call on the GPU and in the CPU emulator of the same kernel body."""
    params = _params(torch.float32, "cuda", seed=3)
    _, opt = _run_fused(kind, params, 2, seed=3)
    ds = opt._devices[torch.device("cuda", torch.cuda.current_device())]
    call = opt._buckets[0].calls[None]
    grads = _grads(call.params, 99, seed=3)
    ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, ds.group_lr)
    gpu = [list(call.params), grads, *map(list, call.lists), list(call.steps)]
    host = [[t.cpu() for t in lst] for lst in gpu]
    args = (call.meta, ds.hparams.cpu(), ds.group_lr.cpu())
    scale = torch.tensor(8.0)
    if kind == "sgd":
        ops.sgd_update_(*gpu, call.meta, ds.hparams, ds.group_lr, scale.cuda(), None)
        emulate.emulate_sgd_update_(*host, *args, scale, None)
    else:
        ops.adam_update_(*gpu, call.meta, ds.hparams, ds.group_lr, scale.cuda(), None)
        emulate.emulate_adam_update_(*host, *args, scale, None)
    for g_list, h_list in zip(gpu, host, strict=True):
        for g, h in zip(g_list, h_list, strict=True):
            torch.testing.assert_close(g.cpu(), h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_found_inf_changes_nothing(kind):
    params = _params(torch.float32, "cuda", seed=4)
    _, opt = _run_fused(kind, params, 2, seed=4)
    call = opt._buckets[0].calls[None]
    before = [
        t.clone() for lst in ([call.params], call.lists, [call.steps]) for x in lst for t in x
    ]
    for p, g in zip(call.params, _grads(call.params, 50, seed=4), strict=True):
        p.grad = g
    opt.grad_scale = torch.tensor(4.0, device="cuda")
    opt.found_inf = torch.tensor(1.0, device="cuda")
    opt.step()
    after = [t for lst in ([call.params], call.lists, [call.steps]) for x in lst for t in x]
    for b, a in zip(before, after, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_step_does_not_sync(kind):
    params = _params(torch.float32, "cuda", seed=5)
    live, opt = _run_fused(kind, params, 1, seed=5)  # state allocated, calls cached
    for p, g in zip(live, _grads(live, 1, seed=5), strict=True):
        p.grad = g  # the optimizer's params (live), not the caller's (params)
    before = [p.clone() for p in live]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    # the step ran with the new grads: as torch.optim's second step with the same grads
    expected = _run_torch(kind, params, 2, seed=5)
    for b, p, e in zip(before, live, expected, strict=True):
        assert not torch.equal(b, p)
        torch.testing.assert_close(p, e, **TOL[torch.float32])


def test_cuda_graph_replays_changing_lr():
    """A captured step replays with the lr the schedule gives at each replay."""
    params = _params(torch.float32, "cuda", seed=6)
    expected = _run_torch("sgd", params, STEPS, seed=6)
    live = _fresh(params)
    opt = fusedlr.SGD(
        live,
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-2,
        schedule=schedules.StepLR(step_size=2, gamma=0.5),
    )
    static_grads = [torch.zeros_like(p) for p in live]
    for p, g in zip(live, static_grads, strict=True):
        p.grad = g
    # Warm up on a side stream (allocates state), then undo the warm-up step exactly.
    snapshot = [p.clone() for p in live]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        opt.step()
    torch.cuda.current_stream().wait_stream(stream)
    for p, s in zip(live, snapshot, strict=True):
        p.copy_(s)
    for st in opt.state.values():
        st["step"].zero_()
        st["momentum_buffer"].zero_()
    opt.schedule_counter.zero_()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for t in range(STEPS):
        for g, new in zip(static_grads, _grads(live, t, seed=6), strict=True):
            g.copy_(new)
        graph.replay()
    for e, g in zip(expected, live, strict=True):
        torch.testing.assert_close(g, e, **TOL[torch.float32])
