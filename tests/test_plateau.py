"""fusedlr.ReduceLROnPlateau against torch.optim.lr_scheduler.ReduceLROnPlateau (the oracle)."""

import copy
import math
import random

import pytest
import torch
from torch.optim import lr_scheduler

import fusedlr
from fusedlr import schedules

BASE_LRS = (0.5, 0.1, 0.03)


def _metrics(seed: int, n: int) -> list[float]:
    """A noisy decreasing-then-flat sequence with exact repeats, so every branch is taken."""
    rng = random.Random(seed)
    out, level = [], 1.0
    for i in range(n):
        if rng.random() < 0.2 and out:
            out.append(out[-1])  # exact repeat: never better, in every mode
            continue
        level *= rng.choice((0.9, 0.999, 1.0, 1.02, 1.3))
        value = level + rng.choice((0.0, 1e-5, -1e-5, 0.05, -0.05))
        out.append(value if i % 7 else -value)  # sign changes exercise rel thresholds
    return out


def _pair(schedule=None, torch_schedule=None):
    params = [torch.zeros(3, dtype=torch.float64) for _ in BASE_LRS]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, BASE_LRS, strict=True)]
    ours = fusedlr.SGD(copy.deepcopy(groups), lr=0.1, schedule=schedule)
    theirs = torch.optim.SGD(groups, lr=0.1)
    return ours, theirs


def _lrs(opt) -> list[float]:
    return [float(x) for x in opt.get_last_lr()]


def _close(a, b, rel=1e-12):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x == pytest.approx(y, rel=rel, abs=0.0), (a, b)


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_torch(mode, threshold_mode, seed):
    rng = random.Random(1000 + seed)
    kw = dict(
        mode=mode,
        threshold_mode=threshold_mode,
        factor=rng.choice((0.1, 0.5, 0.7)),
        patience=rng.choice((0, 1, 3)),
        cooldown=rng.choice((0, 1, 4)),
        threshold=rng.choice((1e-4, 0.01, 0.1)),
        min_lr=rng.choice((0.0, 1e-3, [1e-3, 2e-2, 0.0])),
        eps=rng.choice((1e-8, 1e-3)),
    )
    ours, theirs = _pair()
    plateau = fusedlr.ReduceLROnPlateau(ours, **kw)
    reference = lr_scheduler.ReduceLROnPlateau(theirs, **kw)
    for i, m in enumerate(_metrics(seed, 120)):
        metric = torch.tensor(m, dtype=torch.float64) if i % 2 else m  # tensor and float
        plateau.step(metric)
        reference.step(m)
        _close(_lrs(plateau), reference.get_last_lr())
        assert int(plateau.num_bad_epochs) == reference.num_bad_epochs
        assert int(plateau.cooldown_counter) == reference.cooldown_counter
        assert float(plateau.best) == reference.best
        assert int(plateau.last_epoch) == reference.last_epoch


def test_reduces_and_clamps_per_group_min_lr():
    ours, theirs = _pair()
    min_lr = [0.2, 0.0, 0.02]
    plateau = fusedlr.ReduceLROnPlateau(ours, factor=0.5, patience=0, min_lr=min_lr)
    reference = lr_scheduler.ReduceLROnPlateau(theirs, factor=0.5, patience=0, min_lr=min_lr)
    for _ in range(12):  # never improves after the first: reduces every step
        plateau.step(torch.tensor(1.0))
        reference.step(1.0)
        _close(_lrs(plateau), reference.get_last_lr())
    lrs = _lrs(plateau)
    assert lrs[0] == pytest.approx(0.2, rel=1e-15)
    assert lrs[2] == pytest.approx(0.02, rel=1e-15)
    assert lrs[1] == pytest.approx(0.1 * 0.5**11, rel=1e-12)  # under eps=1e-8 at the 12th


def test_metric_dtype_and_device_of_state():
    opt, _ = _pair()
    plateau = fusedlr.ReduceLROnPlateau(opt, patience=0)
    plateau.step(torch.tensor([2.0], dtype=torch.float32))  # one-element, float32
    plateau.step(torch.tensor(3.0, dtype=torch.bfloat16))
    assert float(plateau.best) == 2.0
    assert _lrs(plateau)[0] == pytest.approx(0.05)
    for t in (plateau.best, plateau.num_bad_epochs, plateau.cooldown_counter, plateau.last_epoch):
        assert t.dim() == 0 and t.device == opt.param_groups[0]["params"][0].device
    with pytest.raises(ValueError, match="metrics"):
        plateau.step(torch.ones(2))
    with pytest.raises(TypeError, match="metrics"):
        plateau.step("1.0")


@pytest.mark.parametrize(
    "fused, recursive",
    [
        (schedules.StepLR(3, gamma=0.5), lambda o: lr_scheduler.StepLR(o, 3, gamma=0.5)),
        (schedules.ExponentialLR(0.9), lambda o: lr_scheduler.ExponentialLR(o, 0.9)),
        (
            schedules.MultiStepLR([4, 9, 20], gamma=0.3),
            lambda o: lr_scheduler.MultiStepLR(o, [4, 9, 20], gamma=0.3),
        ),
    ],
)
def test_composes_with_schedule(fused, recursive):
    """The plateau factor multiplies the schedule: torch's chainable schedulers (which multiply
    group['lr'] in place) followed by torch's plateau give the same trajectory."""
    ours, theirs = _pair(schedule=fused)
    torch_sched = recursive(theirs)
    kw = dict(factor=0.5, patience=1, cooldown=1, min_lr=[1e-3, 0.0, 1e-2])
    plateau = fusedlr.ReduceLROnPlateau(ours, **kw)
    reference = lr_scheduler.ReduceLROnPlateau(theirs, **kw)
    for p in ours.param_groups:
        p["params"][0].grad = torch.zeros(3, dtype=torch.float64)
    for m in _metrics(7, 40):
        ours.step()
        theirs.step()
        torch_sched.step()
        plateau.step(torch.tensor(m))
        reference.step(m)
        _close(_lrs(plateau), [g["lr"] for g in theirs.param_groups])


def test_state_dict_round_trip_in_place():
    kw = dict(mode="max", factor=0.5, patience=2, cooldown=2, min_lr=[1e-3, 0.0, 1e-2])
    seq = _metrics(3, 60)
    seq = [-m for m in seq]

    def make():
        opt, _ = _pair(schedule=schedules.CosineAnnealingLR(17))
        for g in opt.param_groups:
            g["params"][0].grad = torch.ones(3, dtype=torch.float64)
        return opt, fusedlr.ReduceLROnPlateau(opt, **kw)

    opt, plateau = make()
    full = []
    for i, m in enumerate(seq):
        if i == 30:
            saved_opt, saved = copy.deepcopy(opt.state_dict()), copy.deepcopy(plateau.state_dict())
        opt.step()
        plateau.step(torch.tensor(m))
        full.append(_lrs(opt))

    opt2, plateau2 = make()
    ptrs = {k: getattr(plateau2, k).data_ptr() for k in ("best", "num_bad_epochs",
                                                         "cooldown_counter", "last_epoch")}
    scale_ptr = next(iter(opt2._devices.values())).lr_scale.data_ptr()
    opt2.load_state_dict(saved_opt)
    plateau2.load_state_dict(saved)
    assert {k: getattr(plateau2, k).data_ptr() for k in ptrs} == ptrs
    assert next(iter(opt2._devices.values())).lr_scale.data_ptr() == scale_ptr
    for i, m in enumerate(seq[30:], start=30):
        opt2.step()
        plateau2.step(torch.tensor(m))
        assert _lrs(opt2) == full[i]
    assert plateau2.state_dict()["min_lrs"] == kw["min_lr"]


def test_state_dict_format_and_live_views():
    """The state is stored as one-element tensors (torch.compile before 2.14 drops in-place
    writes to 0-dim ones) but saved as 0-dim CPU tensors, as before; 0-dim and one-element
    state loads alike. The public 0-dim attributes are views that follow later steps."""
    opt, theirs = _pair()
    reference = lr_scheduler.ReduceLROnPlateau(theirs, patience=1, cooldown=1)
    plateau = fusedlr.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    best, bad = plateau.best, plateau.num_bad_epochs  # held across steps, as a graph would
    for m in (3.0, 2.0, 2.5):
        reference.step(m)
        plateau.step(m)
    assert float(best) == reference.best == 2.0 and int(bad) == reference.num_bad_epochs == 1
    sd = plateau.state_dict()
    for k in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
        assert sd[k].dim() == 0 and sd[k].device.type == "cpu", k
    for shape in ((), (1,)):
        fresh = fusedlr.ReduceLROnPlateau(_pair()[0])
        fresh.load_state_dict({**sd, **{k: sd[k].reshape(shape) for k in
                                        ("best", "num_bad_epochs", "cooldown_counter",
                                         "last_epoch")}})
        for m in (2.5, 2.5, 1.0):
            fresh.step(m)
        assert float(fresh.best) == 1.0 and int(fresh.last_epoch) == 6
    for m in (2.5, 2.5, 1.0):
        reference.step(m)
        plateau.step(m)
    assert float(best) == reference.best == 1.0
    assert _lrs(opt) == pytest.approx(reference.get_last_lr(), rel=1e-12)


def test_loads_torch_state_dict():
    ours, theirs = _pair()
    reference = lr_scheduler.ReduceLROnPlateau(theirs, patience=1, cooldown=1)
    for m in (3.0, 2.0, 2.5, 2.5):
        reference.step(m)
    plateau = fusedlr.ReduceLROnPlateau(ours)
    plateau.load_state_dict(reference.state_dict())
    assert plateau.patience == 1 and plateau.cooldown == 1
    assert float(plateau.best) == reference.best == 2.0
    assert int(plateau.cooldown_counter) == reference.cooldown_counter
    assert int(plateau.num_bad_epochs) == reference.num_bad_epochs


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        (dict(factor=1.0), ValueError, "factor"),
        (dict(factor=1.5), ValueError, "factor"),
        (dict(factor=-0.1), ValueError, "factor"),
        (dict(mode="avg"), ValueError, "mode"),
        (dict(threshold_mode="pct"), ValueError, "threshold_mode"),
        (dict(patience=-1), ValueError, "patience"),
        (dict(patience=1.5), TypeError, "patience"),
        (dict(cooldown=-2), ValueError, "cooldown"),
        (dict(threshold=-1e-4), ValueError, "threshold"),
        (dict(threshold=math.nan), ValueError, "threshold"),
        (dict(eps=-1.0), ValueError, "eps"),
        (dict(min_lr=-1.0), ValueError, "min_lr"),
        (dict(min_lr=[0.0, 0.0]), ValueError, "min_lr"),
        (dict(min_lr=[0.0, -1.0, 0.0]), ValueError, r"min_lr\[1\]"),
    ],
)
def test_validation(kwargs, exc, name):
    opt, _ = _pair()
    with pytest.raises(exc, match=name):
        fusedlr.ReduceLROnPlateau(opt, **kwargs)


def test_rejects_torch_optimizer():
    _, theirs = _pair()
    with pytest.raises(TypeError, match="fusedlr optimizer"):
        fusedlr.ReduceLROnPlateau(theirs)


def test_new_group_extends_scalar_min_lr_only():
    opt, _ = _pair()
    plateau = fusedlr.ReduceLROnPlateau(opt, patience=0, factor=0.5, min_lr=0.01)
    opt.add_param_group({"params": [torch.zeros(2, dtype=torch.float64)], "lr": 0.4})
    plateau.step(1.0)
    plateau.step(1.0)
    _close(_lrs(plateau), [0.25, 0.05, 0.015, 0.2])
    opt2, _ = _pair()
    plateau2 = fusedlr.ReduceLROnPlateau(opt2, min_lr=[0.0, 0.0, 0.0])
    opt2.add_param_group({"params": [torch.zeros(2, dtype=torch.float64)], "lr": 0.4})
    with pytest.raises(RuntimeError, match="min_lr"):
        plateau2.step(1.0)
