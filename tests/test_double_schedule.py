"""A scheduled group whose lr someone else changes warns once (DoubleScheduleWarning); groups
without a schedule, where a torch scheduler is the legitimate way, stay silent."""

import random
import warnings

import pytest
import torch

import fusedlr
from fusedlr import schedules as S

OPTIMIZERS = [fusedlr.SGD, fusedlr.Adam, fusedlr.AdamW]


def _params(n=2):
    return [torch.randn(random.choice([1, 7, 33])) for _ in range(n)]


def _run(opt, params, steps, sched=None):
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("opt_cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("make", [
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 - s / 50),  # HF's "linear"
    lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5),
    lambda o: torch.optim.lr_scheduler.ConstantLR(o, 1.0, 3),  # never changes the lr
], ids=["LambdaLR", "StepLR", "ConstantLR(1.0)"])
def test_torch_scheduler_on_a_scheduled_group_warns_once(opt_cls, make):
    params = _params()
    scheduled = {"params": params[1:], "schedule": S.ExponentialLR(0.9)}
    opt = opt_cls([{"params": params[:1]}, scheduled], lr=0.01)
    sched = make(opt)
    with pytest.warns(fusedlr.DoubleScheduleWarning) as record:
        _run(opt, params, 6, sched)
    assert len(record) == 1
    msg = str(record[0].message)
    assert "param group 1" in msg and "ExponentialLR" in msg
    assert "torch.optim.lr_scheduler" in msg and "schedule=None" in msg
    assert record[0].filename == __file__  # points at the caller's line, not fusedlr's


@pytest.mark.parametrize("opt_cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_hand_edit_of_a_scheduled_lr_warns_and_names_the_values(opt_cls):
    params = _params(1)
    opt = opt_cls(params, lr=0.01, schedule=S.CosineAnnealingLR(10))
    _run(opt, params, 2)
    opt.param_groups[0]["lr"] = 0.005
    with pytest.warns(fusedlr.DoubleScheduleWarning, match=r"from 0\.01 to 0\.005.*hand edit"):
        _run(opt, params, 1)
    opt.param_groups[0]["lr"] = 0.002
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per optimizer
        _run(opt, params, 2)
    assert opt.get_host_lr("next")[0] == pytest.approx(S.CosineAnnealingLR(10).values(6, 0.002)
                                                      [-1].item(), rel=1e-12)


@pytest.mark.parametrize("opt_cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_unscheduled_groups_stay_silent(opt_cls):
    """schedule=None: a torch scheduler, a hand edit and torch's state_dict round trip are the
    legitimate ways to drive group['lr'], and torch's lrs are what the kernel uses."""
    params = [p.double() for p in _params()]
    clones = [p.clone() for p in params]
    opt = opt_cls(params, lr=0.01)
    ref_cls = getattr(torch.optim, opt_cls.__name__)
    ref = ref_cls(clones, lr=0.01, foreach=False)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=12)
    ref_sched = torch.optim.lr_scheduler.OneCycleLR(ref, 0.05, total_steps=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(8):
            for p, q in zip(params, clones, strict=True):
                p.grad = torch.randn_like(p)
                q.grad = p.grad.clone()
            opt.step()
            ref.step()
            sched.step()
            ref_sched.step()
        torch.testing.assert_close(params, clones, rtol=1e-12, atol=1e-14)
        assert opt.get_host_lr("next") == [g["lr"] for g in ref.param_groups]
        opt.param_groups[0]["lr"] = 0.001
        _run(opt, params, 1)
    assert opt.get_host_lr()[0] == 0.001


def test_loading_a_state_dict_is_not_a_double_schedule():
    """load_state_dict may bring another base lr (and torch's 'initial_lr'): a relayout, not
    another scheduler."""
    params = _params(1)
    opt = fusedlr.AdamW(params, lr=0.01, schedule=S.StepLR(3, 0.5))
    _run(opt, params, 2)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 0.02
    other = fusedlr.AdamW([params[0].clone()], lr=0.01, schedule=S.StepLR(3, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.load_state_dict(sd)
        _run(other, [other.param_groups[0]["params"][0]], 3)
    assert other.get_host_lr() == pytest.approx([0.02 * 0.5], rel=1e-12)


def test_groups_with_initial_lr_from_the_start_do_not_warn():
    """A group built from a torch checkpoint may carry 'initial_lr' from the start."""
    params = _params(1)
    opt = fusedlr.SGD([{"params": params, "initial_lr": 0.1}], lr=0.1, schedule=S.StepLR(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(opt, params, 4)


def test_bad_lr_edit_is_refused_before_any_warning():
    params = _params(1)
    opt = fusedlr.SGD(params, lr=0.1, schedule=S.StepLR(2))
    _run(opt, params, 1)
    before = params[0].clone()
    opt.param_groups[0]["lr"] = -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="Invalid learning rate"):
            _run(opt, params, 1)
    assert torch.equal(params[0], before)


def test_schedule_change_is_not_a_double_schedule():
    """Replacing the schedule (and the lr with it) is a reconfiguration of fusedlr itself."""
    params = _params(1)
    opt = fusedlr.SGD(params, lr=0.1, schedule=S.StepLR(2))
    _run(opt, params, 1)
    opt.param_groups[0].update(lr=0.05, schedule=S.ExponentialLR(0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(opt, params, 2)
