"""The schedule-free optimizers' C++ eager step (``_C.EagerScheduleFree``).

From the second step on, when every param of a device has a grad, ``step()`` reads the grads in
C++ and calls ``fusedlr::schedule_free_update_`` through the dispatcher instead of passing four
Python lists through ``torch.ops``. These tests check that it is taken, that it computes what the
list path computes (forced by dropping the cached object before every step), that a param
without a grad falls back to the list path, that a bad grad is refused before anything is
written, and that no grad is kept alive past a step.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import fusedlr
from fusedlr import ops

CPU = torch.device("cpu")
SIZES = (1, 7, 4097, 65537, 3, 64)


def _make(cls, seed, dtype=torch.float64, **kw):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(n, generator=gen, dtype=dtype) for n in SIZES]
    groups = [dict(params=params[:3], weight_decay=0.01), dict(params=params[3:], lr=0.02)]
    opt = cls(groups, lr=0.05, warmup_steps=3, **kw)
    opt.train()
    return params, opt


def _grads(params, step, seed):
    gen = torch.Generator().manual_seed(1000 * seed + step)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]


CLASSES = [fusedlr.SGDScheduleFree, fusedlr.AdamWScheduleFree]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_eager_path_matches_list_path(cls, monkeypatch):
    """Bit for bit: the same op behind both paths; and the list path runs only once."""
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    eager_params, eager = _make(cls, seed)
    list_params, listed = _make(cls, seed)
    calls = []
    real = ops.schedule_free_update_
    monkeypatch.setattr(ops, "schedule_free_update_",
                        lambda *a: (calls.append(1), real(*a))[1])
    for t in range(12):
        for p, g in zip(eager_params, _grads(eager_params, t, seed), strict=True):
            p.grad = g
        for p, g in zip(list_params, _grads(list_params, t, seed), strict=True):
            p.grad = g
        eager.step()
        n_before = len(calls)
        listed._calls.pop(("native", CPU), None)  # force the list path
        listed.step()
        assert len(calls) == n_before + 1
        if t == 0:
            assert ("native", CPU) in eager._calls
    assert len(calls) == 1 + 12  # the eager optimizer's first step, then the forced ones
    for a, b in zip(eager_params, list_params, strict=True):
        assert torch.equal(a, b)
        for key in eager.state[a]:
            assert torch.equal(eager.state[a][key], listed.state[b][key])
    assert torch.equal(eager.device_scalars(), listed.device_scalars())
    eager.eval()
    listed.eval()
    assert all(torch.equal(a, b) for a, b in zip(eager_params, list_params, strict=True))


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_param_without_grad_falls_back(cls):
    """A param whose grad is None: the C++ step does nothing and the list path steps the
    others; the param without a grad is left as it was."""
    seed = 5
    params, opt = _make(cls, seed)
    ref_params, ref = _make(cls, seed)
    for t in range(3):
        for ps in (params, ref_params):
            for p, g in zip(ps, _grads(ps, t, seed), strict=True):
                p.grad = g
        if t == 2:
            params[4].grad = None
            ref_params[4].grad = None
        opt.step()
        ref._calls.pop(("native", CPU), None)
        ref.step()
    assert all(torch.equal(a, b) for a, b in zip(params, ref_params, strict=True))
    before = params[4].clone()
    params[4].grad = None
    for p, g in zip(params, _grads(params, 9, seed), strict=True):
        if p is not params[4]:
            p.grad = g
    opt.step()
    assert torch.equal(params[4], before)


def test_bad_grad_refused_before_any_write_on_the_eager_path():
    params, opt = _make(fusedlr.AdamWScheduleFree, 7, dtype=torch.float32)
    for t in range(2):
        for p, g in zip(params, _grads(params, t, 7), strict=True):
            p.grad = g
        opt.step()
    assert ("native", CPU) in opt._calls
    before = ([p.clone() for p in params], [opt.state[p]["z"].clone() for p in params],
              opt.device_scalars().clone())
    params[3].grad = torch.randn(2 * params[3].numel())[::2]  # same shape, strided
    with pytest.raises(RuntimeError, match=r"grads\[3\] must be a dense contiguous"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before[0], strict=True))
    assert all(torch.equal(opt.state[p]["z"], b) for p, b in zip(params, before[1], strict=True))
    assert torch.equal(opt.device_scalars(), before[2])


def test_no_grad_kept_alive_after_a_step():
    params, opt = _make(fusedlr.SGDScheduleFree, 8, dtype=torch.float32)
    for t in range(2):
        for p, g in zip(params, _grads(params, t, 8), strict=True):
            p.grad = g
        opt.step()
    grad = torch.randn(params[0].shape)
    params[0].grad = grad
    ref = weakref.ref(grad)
    opt.step()
    params[0].grad = None
    del grad
    gc.collect()
    assert ref() is None


def test_relayout_drops_the_eager_step():
    """add_param_group rebuilds the call: the new param is stepped too."""
    params, opt = _make(fusedlr.SGDScheduleFree, 9)
    for t in range(2):
        for p, g in zip(params, _grads(params, t, 9), strict=True):
            p.grad = g
        opt.step()
    extra = torch.randn(11, dtype=torch.float64)
    opt.add_param_group(dict(params=[extra]))
    assert ("native", CPU) not in opt._calls
    extra.grad = torch.randn(11, dtype=torch.float64)
    before = extra.clone()
    opt.step()
    assert not torch.equal(extra, before)
