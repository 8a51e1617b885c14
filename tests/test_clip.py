"""max_grad_norm / norm_type / skip_nonfinite: clipping and non-finite skipping inside the step.

Oracle: ``torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type)`` then torch.optim's step
(foreach=False) and ``torch.optim.lr_scheduler``; with a grad scaler, torch's recipe
``scaler.unscale_(opt)`` + clipping + ``scaler.step(opt)``. fusedlr computes the norm on the
device and applies the coefficient inside its update kernels (fusedlr/_clip.py): the grads are
not rewritten without a scaler, and a step allocates nothing.
"""

from __future__ import annotations

import math

import pytest
import torch

import fusedlr
from fusedlr import schedules

CONFIGS = {
    "sgd": (fusedlr.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "adam": (fusedlr.Adam, torch.optim.Adam, dict(lr=1e-2, amsgrad=True)),
    "adamw": (fusedlr.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
}
SIZES = (1, 7, 4097, 65537, 3)
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _params(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen, dtype=torch.float64).to(dtype) for n in SIZES]


def _grads(params, step, seed, big):
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    mag = 5.0 if big else 1e-3  # clipped / not clipped
    return [mag * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            for p in params]


def _pair(kind, dtype, seed, **extra):
    ours_cls, torch_cls, kw = CONFIGS[kind]
    ours = _params(dtype, seed)
    theirs = [p.clone().requires_grad_() for p in ours]
    opt = ours_cls(ours, **kw, schedule=schedules.StepLR(step_size=2, gamma=0.5), **extra)
    topt = torch_cls(theirs, **kw, foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=2, gamma=0.5)
    return ours, opt, theirs, topt, sched


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf], ids=["l2", "l1", "inf"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_matches_clip_grad_norm_then_step(kind, dtype, norm_type):
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    max_norm = 1.5
    ours, opt, theirs, topt, sched = _pair(kind, dtype, seed, max_grad_norm=max_norm,
                                           norm_type=norm_type)
    for t in range(7):
        grads = _grads(ours, t, seed, big=t % 3 != 1)
        for a, b, g in zip(ours, theirs, grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        want = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
        topt.step()
        sched.step()
        torch.testing.assert_close(opt.last_grad_norm, want.double(), **TOL[dtype])
        # the grads are not rewritten (torch's clipping rewrites them)
        assert all(torch.equal(a.grad, g) for a, g in zip(ours, grads, strict=True))
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_steps_without_any_grad(kind):
    """A step where no param has a grad: clip_grad_norm_ of no grads is 0 and torch's step
    changes nothing; the schedule still advances. Then grads again: as torch from there on."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    ours, opt, theirs, topt, sched = _pair(kind, torch.float64, seed, max_grad_norm=1.0,
                                           skip_nonfinite=True)
    for t in range(5):
        with_grads = t in (2, 4)
        grads = _grads(ours, t, seed, big=True)
        for a, b, g in zip(ours, theirs, grads, strict=True):
            a.grad, b.grad = (g.clone(), g.clone()) if with_grads else (None, None)
        opt.step()
        want = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        topt.step()
        sched.step()
        assert float(want) == 0.0 or with_grads
        torch.testing.assert_close(opt.last_grad_norm, want.double(), **TOL[torch.float64])
        assert float(opt.skipped_steps) == 0.0
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_mixed_dtypes_share_one_norm():
    """Params of two dtypes (two buckets): one total norm over all of them, as torch's."""
    seed = 3
    gen = torch.Generator().manual_seed(seed)
    base = [torch.randn(n, generator=gen, dtype=torch.float64) for n in (5, 300, 9)]
    ours = [base[0].clone(), base[1].float(), base[2].clone()]
    theirs = [p.clone().requires_grad_() for p in ours]
    opt = fusedlr.SGD(ours, lr=0.1, momentum=0.5, max_grad_norm=0.7)
    topt = torch.optim.SGD(theirs, lr=0.1, momentum=0.5, foreach=False)
    for t in range(4):
        for a, b, g in zip(ours, theirs, _grads(ours, t, seed, big=True), strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        want = torch.nn.utils.clip_grad_norm_(theirs, 0.7)
        topt.step()
        torch.testing.assert_close(opt.last_grad_norm, want.double(), rtol=1e-6, atol=0)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def _model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_grad_scaler_clips_the_unscaled_grads(kind):
    """GradScaler hands grad_scale / found_inf to the step; the norm is that of the unscaled
    grads, as torch's unscale_ + clip_grad_norm_ + scaler.step. Overflow steps are skipped."""
    ours_cls, torch_cls, kw = CONFIGS[kind]
    m1, m2 = _model(4), _model(4)
    opt = ours_cls(m1.parameters(), **kw, max_grad_norm=0.05)
    topt = torch_cls(m2.parameters(), **kw, foreach=False)
    s1 = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    s2 = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    gen = torch.Generator().manual_seed(5)
    for t in range(8):
        x = torch.randn(8, 6, generator=gen)
        for model, scaler in ((m1, s1), (m2, s2)):
            scaler.scale(model(x).square().mean()).backward()
            if t == 3:
                next(iter(model.parameters())).grad.view(-1)[0] = float("inf")
        s1.step(opt)
        s1.update()
        s2.unscale_(topt)
        want = torch.nn.utils.clip_grad_norm_(m2.parameters(), 0.05)
        s2.step(topt)
        s2.update()
        if t != 3:
            torch.testing.assert_close(opt.last_grad_norm.float(), want, rtol=1e-5, atol=0)
        for model in (m1, m2):
            model.zero_grad(set_to_none=True)
    for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert s1.get_scale() == s2.get_scale()


@pytest.mark.parametrize("clip", [None, 1.0], ids=["no-clip", "clip"])
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_skip_nonfinite_leaves_everything_untouched(kind, clip):
    """A NaN or Inf grad: params and state untouched, counted on the device, the schedule held
    with skip_schedule_on_inf; the run equals torch's with those steps left out."""
    seed = 6
    ours, opt, theirs, topt, sched = _pair(kind, torch.float64, seed, max_grad_norm=clip,
                                           skip_nonfinite=True, skip_schedule_on_inf=True)
    bad = {2: float("nan"), 5: float("inf"), 6: -float("inf")}
    for t in range(9):
        grads = _grads(ours, t, seed, big=True)
        if t in bad:
            grads[t % len(grads)].view(-1)[0] = bad[t]
        for a, g in zip(ours, grads, strict=True):
            a.grad = g.clone()
        before = ([p.clone() for p in ours],
                  [{k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v)}
                   for p in ours] if t > 0 else None)
        opt.step()
        if t in bad:
            assert all(torch.equal(p, b) for p, b in zip(ours, before[0], strict=True))
            if before[1] is not None:
                for p, st in zip(ours, before[1], strict=True):
                    assert all(torch.equal(opt.state[p][k], v) for k, v in st.items())
            continue
        for b, g in zip(theirs, grads, strict=True):
            b.grad = g.clone()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(theirs, clip)
        topt.step()
        sched.step()
    assert int(opt.skipped_steps) == len(bad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])


def test_without_skip_nonfinite_a_nan_grad_spreads_as_in_torch():
    ours, opt, theirs, topt, _ = _pair("sgd", torch.float64, 7, max_grad_norm=1.0)
    grads = _grads(ours, 0, 7, big=True)
    grads[1][0] = float("nan")
    for a, b, g in zip(ours, theirs, grads, strict=True):
        a.grad, b.grad = g.clone(), g.clone()
    opt.step()
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    topt.step()
    assert opt.skipped_steps is None
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.isnan(), b.isnan())


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_clipped_step_allocates_nothing(kind):
    ours, opt, *_ = _pair(kind, torch.float32, 8, max_grad_norm=1.0, skip_nonfinite=True)
    for a, g in zip(ours, _grads(ours, 0, 8, big=True), strict=True):
        a.grad = g
    for _ in range(3):
        opt.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        opt.step()
    allocs = [(e.name, e.self_cpu_memory_usage) for e in prof.events()
              if e.self_cpu_memory_usage > 0 or (e.name == "[memory]" and e.cpu_memory_usage > 0)]
    assert allocs == []


def _norm_cases():
    gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    out = []
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        ts = [torch.randn(n, generator=gen, dtype=torch.float64).to(dtype)
              for n in (1, 7, 0, 4097, 65537, 16384 * 3)]
        ts.append(torch.randn(3, 5, 7, 2, generator=gen).to(dtype).contiguous(
            memory_format=torch.channels_last))
        out.append((dtype, ts))
    return out


@pytest.mark.parametrize("ord", [2.0, 1.0, math.inf, 3.0], ids=["l2", "l1", "inf", "l3"])
def test_grad_norms_op_matches_vector_norm(ord):
    """fusedlr.ops.grad_norms_ (the CPU norm pass) against torch.linalg.vector_norm in
    float64, with NaN and Inf entries."""
    from fusedlr import ops

    for dtype, ts in _norm_cases():
        out = torch.full((len(ts),), -1.0, dtype=torch.float64)
        ops.grad_norms_(ts, ord, out)
        # (an empty grad has norm 0 for every ord; torch's inf norm refuses an empty tensor)
        want = torch.stack([torch.linalg.vector_norm(t.double(), ord) if t.numel()
                            else torch.zeros((), dtype=torch.float64) for t in ts])
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(out, want, rtol=tol, atol=0)
        ts[3][100] = float("inf")
        ts[4][-1] = float("nan")
        ops.grad_norms_(ts, ord, out)
        assert math.isinf(out[3]) and math.isnan(out[4])


def test_grad_norms_op_refuses_bad_arguments():
    from fusedlr import ops

    with pytest.raises(RuntimeError, match="out must be a contiguous float64 CPU tensor of 2"):
        ops.grad_norms_([torch.ones(3), torch.ones(2)], 2.0, torch.zeros(2))
    with pytest.raises(RuntimeError, match=r"grads\[0\] must be dense and non-overlapping"):
        ops.grad_norms_([torch.ones(4, 2)[:, 0]], 2.0, torch.zeros(1, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="ord must be > 0"):
        ops.grad_norms_([torch.ones(3)], 0.0, torch.zeros(1, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_compiled_step_is_one_graph(kind):
    """torch.compile(fullgraph=True) of the clipped step: the same results as eager."""
    seed = 9
    eager, e_opt, *_ = _pair(kind, torch.float32, seed, max_grad_norm=0.5, skip_nonfinite=True)
    comp, c_opt, *_ = _pair(kind, torch.float32, seed, max_grad_norm=0.5, skip_nonfinite=True)
    step = torch.compile(c_opt.step, fullgraph=True, backend="aot_eager")
    for t in range(4):
        grads = _grads(eager, t, seed, big=t != 2)
        for a, b, g in zip(eager, comp, grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        e_opt.step()
        step()
    for a, b in zip(eager, comp, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(c_opt.last_grad_norm, e_opt.last_grad_norm)


@pytest.mark.parametrize(("kw", "match"), [
    (dict(max_grad_norm=0.0), "max_grad_norm must be None or a finite number > 0, got 0.0"),
    (dict(max_grad_norm=-1), "max_grad_norm must be None or a finite number > 0"),
    (dict(max_grad_norm=float("inf")), "max_grad_norm must be None or a finite number > 0"),
    (dict(max_grad_norm="1"), "max_grad_norm must be None or a finite number > 0"),
    (dict(max_grad_norm=1.0, norm_type=0), "norm_type must be a number > 0 or inf, got 0"),
    (dict(max_grad_norm=1.0, norm_type=float("nan")), "norm_type must be a number > 0 or inf"),
])
def test_bad_clip_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        fusedlr.AdamW([torch.zeros(3)], **kw)


def test_skip_nonfinite_must_be_a_bool():
    with pytest.raises(TypeError, match="skip_nonfinite must be a bool, got 1"):
        fusedlr.SGD([torch.zeros(3)], lr=0.1, skip_nonfinite=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.skipif(not fusedlr._C.cuda_compiled(), reason="fusedlr was built without CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_cuda_clipped_step_matches_torch_without_sync(kind, dtype):
    """On a GPU: the norm (torch's _foreach_norm), the coefficient (a float64 grad_scale, read
    in float64 by the kernels) and the update, against torch's recipe (float64 within 1e-12),
    under sync-debug 'error' (a host sync raises)."""
    ours_cls, torch_cls, kw = CONFIGS[kind]
    seed = 10
    ours = [p.cuda() for p in _params(dtype, seed)]
    theirs = [p.clone().requires_grad_() for p in ours]
    opt = ours_cls(ours, **kw, max_grad_norm=1.0, skip_nonfinite=True)
    topt = torch_cls(theirs, **kw, foreach=False)
    for t in range(4):
        grads = [g.cuda() for g in _grads(ours, t, seed, big=True)]
        for a, b, g in zip(ours, theirs, grads, strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        topt.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype])


def test_new_layout_gets_new_norm_buffers():
    """add_param_group rebuilds the buckets and their calls: the norm pass sizes its buffers for
    the new calls (matched by identity, not by a recycled id) and the norm covers every param."""
    ours, opt, theirs, topt, _ = _pair("sgd", torch.float64, 11, max_grad_norm=1.0)
    for t in range(2):
        if t == 1:
            extra = torch.randn(9, dtype=torch.float64)
            opt.add_param_group({"params": [extra]})
            theirs_extra = extra.clone().requires_grad_()
            topt.add_param_group({"params": [theirs_extra]})
            ours, theirs = ours + [extra], theirs + [theirs_extra]
        for a, b, g in zip(ours, theirs, _grads(ours, t, 11, big=True), strict=True):
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        want = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        topt.step()
        torch.testing.assert_close(opt.last_grad_norm, want, **TOL[torch.float64])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **TOL[torch.float64])
