"""Odd but legal input works as torch does: non-contiguous params and grads, params without a
grad, zero- and one-element tensors, NaN/Inf grads, AMP's found_inf, params on another device
(the meta device: the only second device on a CPU-only machine).

The bar is torch.optim with foreach=False (no schedule: fusedlr's schedule=None uses group['lr']).
"""

from __future__ import annotations

import pytest
import torch

import fusedlr

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.3)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]
IDS = [f"{n}-{'-'.join(k for k in kw if k != 'lr') or 'plain'}" for n, kw in CONFIGS]
OPTS = {"SGD": fusedlr.SGD, "Adam": fusedlr.Adam, "AdamW": fusedlr.AdamW}
TORCH = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _pair(name, kwargs, tensors):
    """(fused params, fused opt, torch params, torch opt) over copies of `tensors`."""
    ours = [t.clone().requires_grad_() for t in tensors]
    theirs = [t.clone().requires_grad_() for t in tensors]
    return (ours, OPTS[name](ours, **kwargs), theirs,
            TORCH[name](theirs, **kwargs, foreach=False))


def _non_contiguous(shape, dtype, kind, gen):
    if kind == "transposed":
        return torch.randn(shape[::-1], dtype=dtype, generator=gen).t()
    if kind == "strided":
        return torch.randn(shape[0], shape[1] * 2, dtype=dtype, generator=gen)[:, ::2]
    if kind == "channels_last":
        x = torch.randn(2, 3, *shape, dtype=dtype, generator=gen)
        return x.contiguous(memory_format=torch.channels_last)
    return torch.randn(shape, dtype=dtype, generator=gen)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("pkind", ["transposed", "strided", "channels_last", "dense"])
@pytest.mark.parametrize("gkind", ["transposed", "strided", "dense"])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
def test_non_contiguous_params_and_grads(name, kwargs, pkind, gkind, dtype):
    gen = torch.Generator().manual_seed(1)
    shape = (33, 17)
    params0 = [_non_contiguous(shape, dtype, pkind, gen),
               torch.randn(5, dtype=dtype, generator=gen)]
    # keep the layouts: clone() preserves strides only for dense non-overlapping tensors
    ours = [p.detach().clone().requires_grad_() for p in params0]
    theirs = [p.detach().clone().requires_grad_() for p in params0]
    if pkind == "strided":  # clone() of a strided view is contiguous: build views again
        bases = [torch.empty(shape[0], shape[1] * 2, dtype=dtype) for _ in range(2)]
        ours[0] = bases[0][:, ::2].copy_(params0[0]).requires_grad_()
        theirs[0] = bases[1][:, ::2].copy_(params0[0]).requires_grad_()
    if pkind != "dense":
        assert not ours[0].is_contiguous()
    opt = OPTS[name](ours, **kwargs)
    topt = TORCH[name](theirs, **kwargs, foreach=False)
    for _ in range(4):
        for a, b in zip(ours, theirs, strict=True):
            if a.dim() == 2 and gkind != "dense":
                g = _non_contiguous(shape, dtype, gkind, gen)
                assert not g.is_contiguous()
            else:
                g = torch.randn(a.shape, dtype=dtype, generator=gen)
            a.grad = g.clone() if g.is_contiguous() else g
            b.grad = g.clone()
        opt.step()
        topt.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])
    if pkind != "dense":
        assert not ours[0].is_contiguous()  # updated in place, layout kept


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
def test_params_without_grad_are_skipped_as_torch(name, kwargs):
    gen = torch.Generator().manual_seed(2)
    tensors = [torch.randn(n, dtype=torch.float64, generator=gen) for n in (3, 1, 7, 4)]
    ours, opt, theirs, topt = _pair(name, kwargs, tensors)
    pattern = [(1, 1, 1, 0), (1, 0, 1, 0), (0, 0, 0, 0), (1, 1, 0, 0), (1, 1, 1, 0)]
    for has in pattern:
        for a, b, h in zip(ours, theirs, has, strict=True):
            g = torch.randn(a.shape, dtype=torch.float64, generator=gen) if h else None
            a.grad, b.grad = g, None if g is None else g.clone()
        opt.step()
        topt.step()
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, **TOL[torch.float64])
    assert ours[3] not in opt.state or not any(
        isinstance(v, torch.Tensor) and v.numel() > 1 for v in opt.state[ours[3]].values())
    assert torch.equal(ours[3], tensors[3])


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_zero_and_one_element_tensors(name, kwargs, dtype):
    gen = torch.Generator().manual_seed(3)
    tensors = [torch.randn(s, generator=gen).to(dtype) for s in [(0,), (1,), (0, 5), (), (3, 0, 2)]]
    ours, opt, theirs, topt = _pair(name, kwargs, tensors)
    for _ in range(3):
        for a, b in zip(ours, theirs, strict=True):
            g = torch.randn(a.shape, generator=gen).to(dtype)
            a.grad, b.grad = g, g.clone()
        opt.step()
        topt.step()
    tol = TOL.get(dtype, dict(rtol=1e-2, atol=1e-2))  # bf16/fp16: one rounding apart
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a.float(), b.float(), **tol)


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_grads_propagate_as_torch(name, kwargs, bad):
    gen = torch.Generator().manual_seed(4)
    tensors = [torch.randn(n, dtype=torch.float64, generator=gen) for n in (40, 3)]
    ours, opt, theirs, topt = _pair(name, kwargs, tensors)
    for step in range(3):
        for a, b in zip(ours, theirs, strict=True):
            g = torch.randn(a.shape, dtype=torch.float64, generator=gen)
            if step == 1 and a.numel() == 40:
                g[[3, 17]] = bad
            a.grad, b.grad = g, g.clone()
        opt.step()
        topt.step()
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, equal_nan=True, **TOL[torch.float64])
            assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf())


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=IDS)
def test_found_inf_leaves_everything_as_before(name, kwargs):
    """With AMP's found_inf set, NaN/Inf grads change nothing (params, state, per-param steps)."""
    p = torch.randn(10, dtype=torch.float32).requires_grad_()
    opt = OPTS[name]([p], **kwargs)
    p.grad = torch.randn_like(p)
    opt.step()
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items() if isinstance(v, torch.Tensor)}
    p.grad = torch.full_like(p, float("nan"))
    opt.grad_scale = torch.tensor(1024.0)
    opt.found_inf = torch.tensor(1.0)
    opt.step()
    assert torch.equal(p.detach(), before)
    for k, v in state.items():
        assert torch.equal(opt.state[p][k], v), k


def test_params_on_the_meta_device():
    """A CPU-only machine has no second real device. The meta device is no stand-in for one in a
    mixed group: the optimizer starts a new device's schedule counter from an existing one's
    (a copy out of a meta tensor fails), so a CPU+meta group is not a meaningful test of
    per-device bucketing; that runs on a GPU (CUDA tests). A meta-only optimizer (shape
    tracing) constructs and steps through the ops' fake kernels."""
    meta = [torch.empty(n, device="meta", requires_grad=True) for n in (4, 0, 1)]
    opt = fusedlr.AdamW(meta, lr=0.01, amsgrad=True)
    for _ in range(2):
        for p in meta:
            p.grad = torch.empty_like(p)
        opt.step()
    assert opt.state[meta[0]]["exp_avg"].device.type == "meta"
    assert opt.state[meta[0]]["max_exp_avg_sq"].shape == (4,)


def test_grad_is_a_view_of_another_tensor():
    """A grad that is a (non-contiguous) view into a larger buffer, as DDP's gradient buckets
    make them: works and matches torch; the buffer outside the view is not touched."""
    gen = torch.Generator().manual_seed(6)
    p0 = torch.randn(8, 5, dtype=torch.float64, generator=gen)
    ours, opt, theirs, topt = _pair("Adam", dict(lr=0.01), [p0])
    buf = torch.randn(8, 12, dtype=torch.float64, generator=gen)
    keep = buf.clone()
    ours[0].grad = buf[:, 3:8]
    theirs[0].grad = buf[:, 3:8].clone()
    opt.step()
    topt.step()
    torch.testing.assert_close(ours[0], theirs[0], **TOL[torch.float64])
    assert torch.equal(buf, keep)
