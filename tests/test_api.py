"""The torch.optim surface of fusedlr optimizers: groups, state, state_dict, get_last_lr, info."""

import copy
import random
import subprocess
import sys

import pytest
import torch

import fusedlr
from fusedlr import reference
from fusedlr import schedules as S


def _gen():
    return torch.Generator().manual_seed(random.getrandbits(31))


def _params(gen, sizes=(7, 4097, 1), dtype=torch.float64):
    return [torch.nn.Parameter(torch.randn(n, generator=gen, dtype=dtype)) for n in sizes]


def _set_grads(params, gen):
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)


OPTIMIZERS = [
    (fusedlr.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (fusedlr.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    (fusedlr.AdamW, dict(lr=0.01)),
]
SCHEDULE = S.SequentialLR([S.LinearLR(0.1, 1.0, 5), S.CosineAnnealingLR(20, 1e-3)], [5])


@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=lambda x: getattr(x, "__name__", ""))
def test_state_dict_round_trip_mid_run_is_bit_identical(cls, kw):
    gen = _gen()
    params = _params(gen)
    opt = cls(params, schedule=SCHEDULE, **kw)
    for _ in range(9):
        _set_grads(params, gen)
        opt.step()
    saved_params = [p.detach().clone() for p in params]
    saved = copy.deepcopy(opt.state_dict())

    # Continue the original for 12 more steps.
    grads = [
        [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params] for _ in range(12)
    ]
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        opt.step()

    # A fresh optimizer over fresh params restored from the saved state continues identically.
    params2 = [torch.nn.Parameter(t.clone()) for t in saved_params]
    opt2 = cls(params2, schedule=S.StepLR(1, 0.5), **kw)  # the saved schedule replaces this one
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["schedule"] == SCHEDULE
    for gs in grads:
        for p, g in zip(params2, gs, strict=True):
            p.grad = g.clone()
        opt2.step()
    for a, b in zip(params, params2, strict=True):
        assert torch.equal(a, b)
    assert [x.item() for x in opt.get_last_lr()] == [x.item() for x in opt2.get_last_lr()]


def test_state_dict_is_picklable_with_a_lambda_schedule(tmp_path):
    gen = _gen()
    params = _params(gen)
    opt = fusedlr.SGD(params, lr=0.1, schedule=S.LambdaLR(lambda t: 0.9**t, total_steps=30))
    _set_grads(params, gen)
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    loaded = torch.load(tmp_path / "opt.pt", weights_only=False)
    opt2 = fusedlr.SGD(_params(gen), lr=0.1)
    opt2.load_state_dict(loaded)
    assert opt2.get_last_lr()[0].item() == pytest.approx(0.1 * 0.9, rel=1e-15)


def test_get_last_lr_matches_reference_every_step():
    gen = _gen()
    params = _params(gen)
    groups = [
        {"params": params[:1], "lr": 0.3, "schedule": S.ExponentialLR(0.9)},
        {"params": params[1:], "lr": 0.02, "schedule": SCHEDULE, "steps_per_epoch": 3},
    ]
    opt = fusedlr.Adam(groups)
    for k in range(40):
        got = [lr.item() for lr in opt.get_last_lr()]
        want = [
            reference.schedule_lr(S.ExponentialLR(0.9), k, 0.3),
            reference.schedule_lr(SCHEDULE, k // 3, 0.02),
        ]
        assert got == pytest.approx(want, rel=1e-13)
        assert all(lr.dtype == torch.float64 and lr.dim() == 0 for lr in opt.get_last_lr())
        _set_grads(params, gen)
        opt.step()


def test_add_param_group_and_zero_grad():
    gen = _gen()
    a, b = _params(gen, (5, 9))
    opt = fusedlr.SGD([a], lr=0.1, momentum=0.9, schedule=S.StepLR(2, 0.5))
    _set_grads([a], gen)
    opt.step()
    opt.add_param_group({"params": [b], "lr": 0.5, "schedule": None})
    assert len(opt.param_groups) == 2
    assert opt.param_groups[1]["momentum"] == 0.9  # defaults fill the new group
    # The counter carries on: the new group starts at the same step count.
    assert [x.item() for x in opt.get_last_lr()] == [0.1, 0.5]
    _set_grads([a, b], gen)
    before = b.detach().clone()
    g = b.grad.clone()
    opt.step()
    assert torch.allclose(b.detach(), before - 0.5 * g, rtol=1e-14, atol=0)
    assert [x.item() for x in opt.get_last_lr()] == [0.05, 0.5]
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    _set_grads([a, b], gen)
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and not a.grad.any()


def test_manual_lr_change_takes_effect_without_a_schedule():
    gen = _gen()
    (p,) = _params(gen, (33,))
    opt = fusedlr.SGD([p], lr=0.1)
    for lr in (0.1, 0.01, 0.5):
        opt.param_groups[0]["lr"] = lr
        _set_grads([p], gen)
        before, g = p.detach().clone(), p.grad.clone()
        opt.step()
        assert torch.allclose(p.detach(), before - lr * g, rtol=1e-14, atol=0)
    # A base lr changed under a schedule scales the schedule.
    opt.param_groups[0]["schedule"] = S.ExponentialLR(0.5)
    opt.param_groups[0]["lr"] = 2.0
    assert opt.get_last_lr()[0].item() == pytest.approx(2.0 * 0.5**3)


def test_params_without_grad_keep_no_state():
    gen = _gen()
    a, b = _params(gen, (3, 4))
    opt = fusedlr.Adam([a, b], lr=0.1)
    a.grad = torch.randn(3, generator=gen, dtype=torch.float64)
    before = b.detach().clone()
    opt.step()
    assert b not in opt.state and torch.equal(b.detach(), before)
    assert opt.state[a]["step"].item() == 1


def test_low_precision_params_use_fp32_state_and_match_reference():
    gen = _gen()
    for dtype, tol in ((torch.bfloat16, 1e-2), (torch.float16, 2e-3)):
        init = torch.randn(4097, generator=gen)
        p = torch.nn.Parameter(init.to(dtype))
        q = torch.nn.Parameter(init.to(dtype))
        opt = fusedlr.AdamW([p], lr=1e-2, schedule=S.CosineAnnealingLR(10))
        ref = reference.AdamW([q], lr=1e-2, schedule=S.CosineAnnealingLR(10))
        for _ in range(20):
            g = torch.randn(4097, generator=gen).to(dtype)
            p.grad, q.grad = g.clone(), g.clone()
            opt.step()
            ref.step()
        assert opt.state[p]["exp_avg"].dtype == torch.float32
        diff = (p.float() - q.float()).abs().max().item()
        assert diff <= tol * q.float().abs().max().item()


def test_info_command_runs():
    out = subprocess.run(
        [sys.executable, "-m", "fusedlr", "info"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "CPU vector ISA" in out.stdout and "CUDA kernels compiled" in out.stdout
    assert fusedlr.__version__ in out.stdout
    # Without OpenMP, at::parallel_for (inlined from ATen's headers) silently runs serially.
    from fusedlr import _C

    assert _C.cpu_openmp()
