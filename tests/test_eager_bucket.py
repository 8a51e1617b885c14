"""The C++ eager step (fusedlr._C.EagerBucket) against the list path and torch.optim.

After the first step, an eager ``step()`` whose params all have grads reads the grads in
C++ and calls the update op through the C++ dispatcher. These tests check that this path
is taken, that it gives bit-identical results to the list path (``torch.ops``) and the
same results as ``torch.optim``, that it falls back when a grad is missing, that bad grads
are refused before anything is written, and that it keeps no grad alive after a step.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

import fusedlr

SIZES = (1, 7, 4097, 65537)
KINDS = ("SGD", "Adam", "AdamW")


def _params(sizes, dtype=torch.float32, seed=None):
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    return [torch.nn.Parameter(torch.randn(n, generator=gen).to(dtype)) for n in sizes]


def _set_grads(params, gen):
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)


def _opt(kind, params, **extra):
    sched = fusedlr.schedules.CosineAnnealingLR(T_max=20, eta_min=1e-4)
    if kind == "SGD":
        return fusedlr.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                           schedule=sched, **extra)
    cls = fusedlr.Adam if kind == "Adam" else fusedlr.AdamW
    return cls(params, lr=1e-2, weight_decay=1e-2, schedule=sched, **extra)


def _natives(opt):
    return [c.native for b in opt._buckets for c in b.calls.values() if c.native is not None]


def _force_list_path(opt, monkeypatch):
    monkeypatch.setattr(opt, "_gather_native", lambda: None)


@pytest.mark.parametrize("kind", KINDS)
def test_eager_path_is_taken_after_the_first_step(kind):
    params = _params(SIZES)
    opt = _opt(kind, params)
    gen = torch.Generator().manual_seed(1)
    _set_grads(params, gen)
    opt.step()  # builds the call through the list path
    _set_grads(params, gen)
    opt.step()
    natives = _natives(opt)
    assert len(natives) == 1 and len(natives[0]) == len(SIZES)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_eager_path_matches_list_path_bit_for_bit(kind, dtype, monkeypatch):
    seed = torch.seed() % 2**31
    a, b = _params(SIZES, dtype, seed), _params(SIZES, dtype, seed)
    groups_a = [{"params": a[:2]}, {"params": a[2:], "lr": 0.003}]
    groups_b = [{"params": b[:2]}, {"params": b[2:], "lr": 0.003}]
    opt_a, opt_b = _opt(kind, groups_a), _opt(kind, groups_b)
    _force_list_path(opt_b, monkeypatch)
    ga, gb = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for _ in range(6):
        _set_grads(a, ga)
        _set_grads(b, gb)
        opt_a.step()
        opt_b.step()
    assert _natives(opt_a) and not _natives(opt_b)
    for pa, pb in zip(a, b, strict=True):
        assert torch.equal(pa, pb)
        for key, value in opt_a.state[pa].items():
            assert torch.equal(value, opt_b.state[pb][key]), key


@pytest.mark.parametrize("kind", KINDS)
def test_eager_path_agrees_with_torch_optim_and_scheduler(kind):
    seed = torch.seed() % 2**31
    a = _params(SIZES, torch.float64, seed)
    b = _params(SIZES, torch.float64, seed)
    opt = _opt(kind, a)
    if kind == "SGD":
        ref = torch.optim.SGD(b, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    else:
        ref = getattr(torch.optim, kind)(b, lr=1e-2, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=20, eta_min=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(25):
        _set_grads(a, gen)
        for pa, pb in zip(a, b, strict=True):
            pb.grad = pa.grad.clone()
        opt.step()
        ref.step()
        sched.step()
    assert _natives(opt)
    for pa, pb in zip(a, b, strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12)


def test_missing_grad_falls_back_and_matches_torch():
    seed = torch.seed() % 2**31
    a, b = _params((7, 65537, 1), seed=seed), _params((7, 65537, 1), seed=seed)
    opt = fusedlr.Adam(a, lr=1e-2)
    ref = torch.optim.Adam(b, lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for k in range(8):
        _set_grads(a, gen)
        if k in (3, 4):
            a[1].grad = None  # this step updates only the others
        for pa, pb in zip(a, b, strict=True):
            pb.grad = None if pa.grad is None else pa.grad.clone()
        opt.step()
        ref.step()
    for pa, pb in zip(a, b, strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(opt.state[pa]["step"], ref.state[pb]["step"])


@pytest.mark.parametrize("buckets", [1, 2])
@pytest.mark.parametrize("bad", ["shape", "dtype", "sparse"])
def test_bad_grad_is_refused_before_any_write(bad, buckets):
    # Two buckets (float32 and float64): the bad grad is in the second, so the first must not
    # have been updated when the error is raised. One bucket: the op refuses it before writing.
    p32 = _params((7, 4097))
    p64 = _params((1, 7), torch.float64 if buckets == 2 else torch.float32)
    opt = fusedlr.Adam(p32 + p64, lr=1e-2)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        _set_grads(p32 + p64, gen)
        opt.step()
    assert len(_natives(opt)) == buckets
    _set_grads(p32 + p64, gen)
    dt = p64[1].dtype
    if bad == "shape":  # torch refuses a wrong grad on assignment, but not through .data
        p64[1].grad.data = torch.zeros(8, dtype=dt)
    elif bad == "dtype":
        p64[1].grad.data = torch.zeros(7, dtype=torch.float16)
    else:
        p64[1].grad = torch.zeros(7, dtype=dt).to_sparse()
    before = [p.detach().clone() for p in p32 + p64]
    state = {k: v.clone() for k, v in opt.state[p32[0]].items()}
    counter = opt.schedule_counter.clone()
    index = 1 if buckets == 2 else 3  # the bad grad's index in its bucket
    with pytest.raises(RuntimeError, match=rf"(params|grads)\[{index}\]"):
        opt.step()
    for p, old in zip(p32 + p64, before, strict=True):
        assert torch.equal(p.detach(), old)
    for k, v in state.items():
        assert torch.equal(opt.state[p32[0]][k], v)
    assert torch.equal(opt.schedule_counter, counter)


def test_no_grad_is_kept_alive_after_a_step():
    params = _params((7, 4097))
    opt = fusedlr.SGD(params, lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        _set_grads(params, gen)
        opt.step()
    assert _natives(opt)
    refs = [weakref.ref(p.grad) for p in params]
    opt.zero_grad(set_to_none=True)
    gc.collect()
    assert all(r() is None for r in refs)


def test_step_hooks_run_in_torch_order_and_can_replace_arguments():
    params = _params((7,))
    opt = fusedlr.SGD(params, lr=0.1)
    calls = []
    closure_calls = []

    def closure():
        closure_calls.append(1)
        return torch.tensor(2.0)

    def pre(o, args, kwargs):
        calls.append(("pre", o is opt, args, dict(kwargs)))
        return (), {"closure": closure}

    glob = register_optimizer_step_pre_hook(
        lambda o, a, k: calls.append(("global pre",)))
    glob_post = register_optimizer_step_post_hook(
        lambda o, a, k: calls.append(("global post",)))
    h1 = opt.register_step_pre_hook(pre)
    h2 = opt.register_step_post_hook(lambda o, a, k: calls.append(("post", dict(k))))
    try:
        params[0].grad = torch.ones(7)
        loss = opt.step()
    finally:
        for h in (glob, glob_post, h1, h2):
            h.remove()
    assert [c[0] for c in calls] == ["global pre", "pre", "post", "global post"]
    assert calls[1][1] and calls[1][2] == () and calls[1][3] == {}
    assert calls[2][1] == {"closure": closure}
    assert closure_calls == [1] and float(loss) == 2.0


def test_bad_pre_hook_result_is_refused():
    params = _params((7,))
    opt = fusedlr.SGD(params, lr=0.1)
    opt.register_step_pre_hook(lambda o, a, k: "nonsense")
    params[0].grad = torch.ones(7)
    before = params[0].detach().clone()
    with pytest.raises(RuntimeError, match="must return None or a tuple"):
        opt.step()
    assert torch.equal(params[0].detach(), before)


def test_profiler_sees_the_step_range_only_when_profiling():
    params = _params((7,))
    opt = fusedlr.Adam(params, lr=0.1)
    params[0].grad = torch.ones(7)
    opt.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    names = {e.name for e in prof.events()}
    assert "Optimizer.step#Adam.step" in names


def test_eager_bucket_rejects_bad_arguments():
    p = torch.zeros(3)
    with pytest.raises(RuntimeError, match="algorithm must be 'sgd' or 'adam'"):
        fusedlr._C.EagerBucket("rmsprop", [p], [[]], [torch.zeros(())], torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match="adam takes 3 state lists, got 1"):
        fusedlr._C.EagerBucket("adam", [p], [[]], [torch.zeros(())], torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match="1 params but 2 steps"):
        fusedlr._C.EagerBucket("sgd", [p], [[]], [torch.zeros(())] * 2, torch.zeros(1, 2))
    bucket = fusedlr._C.EagerBucket("sgd", [p], [[]], [torch.zeros(())], torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match=r"call gather\(\) first"):
        bucket.run(torch.zeros(1, 16, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                   None, None)


def test_no_grad_is_kept_alive_after_a_refused_step():
    # Two buckets (float32 first, then float64). The float32 op refuses its state after both
    # buckets gathered their grads: the float64 bucket, which never ran, must drop them too.
    p32 = _params((7, 4097))
    p64 = _params((1, 7), torch.float64)
    opt = fusedlr.Adam(p32 + p64, lr=1e-2)
    gen = torch.Generator().manual_seed(6)
    for _ in range(2):
        _set_grads(p32 + p64, gen)
        opt.step()
    assert len(_natives(opt)) == 2
    _set_grads(p32 + p64, gen)
    opt.state[p32[0]]["exp_avg"].resize_(3)  # the op's state check fails
    with pytest.raises(RuntimeError, match=r"exp_avgs\[0\]"):
        opt.step()
    refs = [weakref.ref(p.grad) for p in p32 + p64]
    opt.zero_grad(set_to_none=True)
    gc.collect()
    assert all(r() is None for r in refs)
