"""Dense non-contiguous params (channels_last, transposes) are stepped in place, with no copy.

The optimizer allocates state with ``preserve_format``, so a dense param, its grad and its state
share one memory layout, and the kernels step them as flat memory (``check_bucket``,
``csrc/check_args.h``). Checked here against ``torch.optim`` (foreach=False, its reference
path) with ``torch.optim.lr_scheduler``: results, layouts kept, a grad in another layout, state
saved contiguous by an older version (stepped through a copy, as before), master weights, and
no allocation in a steady-state step (torch's profiler, ``profile_memory``).
"""

from __future__ import annotations

import pytest
import torch

import fusedlr
from fusedlr import schedules

CL = torch.channels_last
# Conv / linear weight shapes of ResNet-50 (first conv, a bottleneck, a downsample, the head),
# with the channel counts divided by 8 to keep the test fast, plus odd sizes.
SHAPES = [(8, 3, 7, 7), (8, 8, 1, 1), (8, 8, 3, 3), (32, 8, 1, 1), (16, 7, 3, 5), (1, 1, 1, 1)]
CONFIGS = {
    "sgd": (fusedlr.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True,
                                                weight_decay=1e-3)),
    "adam": (fusedlr.Adam, torch.optim.Adam, dict(lr=1e-2, amsgrad=True)),
    "adamw": (fusedlr.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
}
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _params(dtype, seed, layout="channels_last"):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in SHAPES:
        t = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        out.append(t.contiguous(memory_format=CL) if layout == "channels_last" else t)
    t = torch.randn(9, 13, generator=gen, dtype=torch.float64).to(dtype)
    out.append(t.t().contiguous().t() if layout == "channels_last" else t)  # a transpose
    return out


def _grads(params, step, seed, layout=None):
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    gs = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) for p in params]
    if layout == "param":
        gs = [torch.empty_like(p).copy_(g) for p, g in zip(params, gs, strict=True)]
    return gs


def _pair(kind, dtype, seed):
    ours_cls, torch_cls, kw = CONFIGS[kind]
    ours = [p.clone().requires_grad_() for p in _params(dtype, seed)]
    theirs = [p.clone().requires_grad_() for p in _params(dtype, seed)]
    opt = ours_cls(ours, **kw, schedule=schedules.StepLR(step_size=2, gamma=0.5))
    topt = torch_cls(theirs, **kw, foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.5)
    return ours, opt, theirs, topt, sched


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("grad_layout", ["param", "contiguous"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_dense_layouts_match_torch_in_place(kind, grad_layout, dtype):
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    ours, opt, theirs, topt, sched = _pair(kind, dtype, seed)
    ptrs = [p.data_ptr() for p in ours]
    for t in range(6):
        for a, b, g in zip(ours, theirs, _grads(ours, t, seed, grad_layout), strict=True):
            a.grad = g
            b.grad = g.clone()
        opt.step()
        topt.step()
        sched.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])
    for p, ptr, shape in zip(ours, ptrs, SHAPES + [(9, 13)], strict=True):
        assert p.data_ptr() == ptr and p.shape == shape
        for key, s in opt.state[p].items():
            if isinstance(s, torch.Tensor) and s.dim() > 0:
                assert s.stride() == p.stride(), (key, s.stride(), p.stride())
    assert ours[2].is_contiguous(memory_format=CL) and not ours[2].is_contiguous()


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_contiguous_state_of_a_dense_param_still_steps(kind):
    """State in the contiguous layout (saved before state followed the param's layout, or set
    by hand): the param is stepped through a contiguous copy, as before, and written back."""
    seed = 11
    ours, opt, theirs, topt, sched = _pair(kind, torch.float64, seed)
    for t in range(4):
        for a, b, g in zip(ours, theirs, _grads(ours, t, seed), strict=True):
            a.grad, b.grad = g, g.clone()
        opt.step()
        topt.step()
        sched.step()
        if t == 1:
            for p in ours:
                for key, s in list(opt.state[p].items()):
                    if isinstance(s, torch.Tensor) and s.dim() > 0:
                        opt.state[p][key] = s.contiguous()
            opt._relayout()  # the calls cached the old state tensors
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
    assert ours[2].is_contiguous(memory_format=CL)


def test_mixed_state_layouts_are_refused_before_any_write():
    p = torch.randn(4, 3, 5, 5, dtype=torch.float64).contiguous(memory_format=CL)
    opt = fusedlr.Adam([p], lr=0.1)
    p.grad = torch.randn_like(p)
    opt.step()
    opt.state[p]["exp_avg_sq"] = torch.zeros(5, 5, 4, 3, dtype=torch.float64).permute(2, 3, 0, 1)
    opt._relayout()
    before = (p.clone(), opt.state[p]["exp_avg"].clone())
    # exp_avg has the param's strides, exp_avg_sq others: neither layout holds for both
    with pytest.raises(RuntimeError, match=r"exp_avgs\[0\] must be a .* contiguous or with "
                                           r"the sizes and strides of params\[0\]"):
        opt.step()
    assert torch.equal(p, before[0]) and torch.equal(opt.state[p]["exp_avg"], before[1])


def test_state_dict_round_trip_keeps_the_layout():
    seed = 12
    ours, opt, *_ = _pair("adam", torch.float32, seed)
    for t in range(2):
        for a, g in zip(ours, _grads(ours, t, seed), strict=True):
            a.grad = g
        opt.step()
    saved = opt.state_dict()
    fresh = [p.detach().clone() for p in ours]
    opt2 = fusedlr.Adam(fresh, lr=1e-2, amsgrad=True,
                        schedule=schedules.StepLR(step_size=2, gamma=0.5))
    opt2.load_state_dict(saved)
    for p in fresh:
        for s in opt2.state[p].values():
            if isinstance(s, torch.Tensor) and s.dim() > 0:
                assert s.stride() == p.stride()
    for a, b, g in zip(ours, fresh, _grads(ours, 7, seed), strict=True):
        a.grad, b.grad = g, g.clone()
    opt.step()
    opt2.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, fresh, strict=True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_master_weights_keep_the_layout(dtype):
    """master_weights=True with channels_last 16-bit params: the fp32 masters follow the param's
    layout, and the result equals the same run on contiguous params."""
    seed = 13
    runs = []
    for layout in ("channels_last", "contiguous"):
        params = [p.requires_grad_() for p in _params(dtype, seed, layout)]
        opt = fusedlr.AdamW(params, lr=1e-2, master_weights=True)
        for t in range(3):
            for p, g in zip(params, _grads(params, t, seed), strict=True):
                p.grad = g.contiguous(memory_format=CL) if p.dim() == 4 and layout != "contiguous" \
                    else g
            opt.step()
        if layout == "channels_last":
            assert opt.state[params[2]]["master"].stride() == params[2].stride()
        runs.append([p.detach().contiguous() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))


def _allocations(step):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        step()
    # an allocation shows as positive self memory of the innermost op (aten::empty, ...), or as
    # a "[memory]" event outside any op
    return [e for e in prof.events()
            if e.self_cpu_memory_usage > 0 or (e.name == "[memory]" and e.cpu_memory_usage > 0)]


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_channels_last_step_allocates_nothing(kind):
    """A steady-state step of channels_last params with grads in their layout allocates no
    memory (no contiguous copy of a param, grad or state), as the contiguous step."""
    seed = 14
    counts = {}
    for layout in ("channels_last", "contiguous"):
        ours_cls, _, kw = CONFIGS[kind]
        params = [p.requires_grad_() for p in _params(torch.float32, seed, layout)]
        opt = ours_cls(params, **kw, schedule=schedules.CosineAnnealingLR(T_max=10))
        for p, g in zip(params, _grads(params, 0, seed, "param"), strict=True):
            p.grad = g
        for _ in range(3):
            opt.step()
        counts[layout] = len(_allocations(opt.step))
        if layout == "channels_last":  # the counter sees allocations: the copy path makes some
            for p in params:
                for key, s in list(opt.state[p].items()):
                    if isinstance(s, torch.Tensor) and s.dim() > 0:
                        opt.state[p][key] = s.contiguous()
            opt._relayout()
            opt.step()
            counts["channels_last, contiguous state"] = len(_allocations(opt.step)) > 0
    assert counts == {"channels_last": 0, "contiguous": 0,
                      "channels_last, contiguous state": True}, counts
