"""Schedule-free optimizers on a CUDA device (skipped without one): the CUDA kernels against
the CPU op for every dtype and odd sizes, no host sync in step()/train()/eval()
(torch.cuda.set_sync_debug_mode("error")), and step() captured in a CUDA graph and replayed
with a changing lr (warmup) against eager steps. The kernel bodies themselves run on the CPU in
tests/test_schedule_free_emulation.py."""

import pytest
import torch

import fusedlr
from fusedlr import schedules

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SIZES = (1, 7, 4097, 65537, 3 * 65536 + 5)
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _pair(cls, dtype, **kw):
    gen = torch.Generator().manual_seed(0)
    cpu = [torch.randn(n, generator=gen, dtype=torch.float64).to(dtype) for n in SIZES]
    gpu = [p.cuda() for p in cpu]
    return (cpu, cls(cpu, **kw)), (gpu, cls(gpu, **kw))


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cls", [fusedlr.SGDScheduleFree, fusedlr.AdamWScheduleFree],
                         ids=lambda c: c.__name__)
def test_cuda_matches_cpu(cls, dtype):
    kw = dict(lr=0.01, weight_decay=0.01, warmup_steps=5, r=1.0)
    (cpu, o_cpu), (gpu, o_gpu) = _pair(cls, dtype, **kw)
    gen = torch.Generator().manual_seed(1)
    o_cpu.train()
    o_gpu.train()
    for k in range(12):
        for p, q in zip(cpu, gpu, strict=True):
            g = torch.randn(p.shape, generator=gen).to(dtype)
            p.grad, q.grad = g, g.cuda()
        o_cpu.step()
        o_gpu.step()
        if k == 6:
            for o in (o_cpu, o_gpu):
                o.eval()
                o.train()
    o_cpu.eval()
    o_gpu.eval()
    torch.testing.assert_close(o_gpu.device_scalars().cpu(), o_cpu.device_scalars(), rtol=1e-14,
                               atol=0)
    # the same element math; float32/float64 to rounding (nvcc contracts to FMA),
    # 16-bit to a few ulps of the value
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, torch.finfo(dtype).eps * 4)
    for p, q in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(q.cpu().double(), p.double(), rtol=tol, atol=tol)


@needs_cuda
@pytest.mark.parametrize("cls", [fusedlr.SGDScheduleFree, fusedlr.AdamWScheduleFree],
                         ids=lambda c: c.__name__)
def test_no_sync_on_cuda(cls):
    (_, _), (gpu, opt) = _pair(cls, torch.float32, lr=0.01,
                               schedule=schedules.CosineAnnealingLR(10))
    for p in gpu:
        p.grad = torch.randn_like(p)
    opt.train()
    opt.step()  # creates the state (allocations, the cached groups tensor)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            opt.step()
        opt.eval()
        opt.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
@pytest.mark.parametrize("cls", [fusedlr.SGDScheduleFree, fusedlr.AdamWScheduleFree],
                         ids=lambda c: c.__name__)
def test_cuda_graph_replay_matches_eager(cls):
    kw = dict(lr=0.02, weight_decay=0.01, warmup_steps=20)  # the lr changes every replay
    (_, _), (eager_p, eager) = _pair(cls, torch.float32, **kw)
    graph_p = [p.clone() for p in eager_p]
    opt = cls(graph_p, **kw)
    grads = [torch.randn_like(p) for p in eager_p]
    for p, q, g in zip(eager_p, graph_p, grads, strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    for o in (eager, opt):
        o.train()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        opt.step()  # warm-up on a side stream: creates z (and exp_avg_sq)
    torch.cuda.current_stream().wait_stream(s)
    eager.step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for _ in range(30):
        graph.replay()
        eager.step()
    torch.cuda.synchronize()
    torch.testing.assert_close(opt.device_scalars(), eager.device_scalars(), rtol=0, atol=0)
    for p, q in zip(eager_p, graph_p, strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
