"""No host sync, ever: step(), ReduceLROnPlateau.step(tensor) and get_last_lr() never ask for a
host value, over every optimizer and every exported schedule kind.

On CPU tensors ``.item()`` is not a device sync, but the guard proves that the Python code never
asks for a host value of a tensor, which on a GPU would be one. (Reads inside the C++ kernels are
not seen by this guard.)
"""

import inspect

import pytest
import torch

import fusedlr
from fusedlr import schedules

# One example per exported schedule class, keyed by name. A schedule exported without an entry
# here (and without a no-argument constructor) fails test_every_schedule_has_an_example.
EXAMPLES = {
    "StepLR": lambda: schedules.StepLR(2, gamma=0.5),
    "MultiStepLR": lambda: schedules.MultiStepLR([1, 3], gamma=0.5),
    "ConstantLR": lambda: schedules.ConstantLR(0.5, total_iters=2),
    "LinearLR": lambda: schedules.LinearLR(0.25, 1.0, total_iters=3),
    "ExponentialLR": lambda: schedules.ExponentialLR(0.9),
    "PolynomialLR": lambda: schedules.PolynomialLR(total_iters=4, power=2.0),
    "CosineAnnealingLR": lambda: schedules.CosineAnnealingLR(4, eta_min=1e-3),
    "NoamDecay": lambda: schedules.NoamDecay(64, 2),
    "LambdaLR": lambda: schedules.LambdaLR(lambda t: 1.0 / (t + 1), total_steps=8),
    "MultiplicativeLR": lambda: schedules.MultiplicativeLR(lambda t: 0.9, total_steps=8),
    "SequentialLR": lambda: schedules.SequentialLR(
        [schedules.LinearLR(0.5, 1.0, 2), schedules.ExponentialLR(0.8)], [2]
    ),
    "ChainedScheduler": lambda: schedules.ChainedScheduler(
        [schedules.ConstantLR(0.5, 2), schedules.ExponentialLR(0.9)]
    ),
    "CosineAnnealingWarmRestarts": lambda: schedules.CosineAnnealingWarmRestarts(3, T_mult=2),
    "CyclicLR": lambda: schedules.CyclicLR(0.01, 0.1, step_size_up=2, mode="triangular2"),
    "OneCycleLR": lambda: schedules.OneCycleLR(0.1, total_steps=10),
    "ExponentialDecay": lambda: schedules.ExponentialDecay(3, 0.9, staircase=True,
                                                           transition_begin=1, end_value=0.05),
    "NaturalExpDecay": lambda: schedules.NaturalExpDecay(3, 0.5),
    "InverseTimeDecay": lambda: schedules.InverseTimeDecay(3, 0.5),
    "PolynomialDecay": lambda: schedules.PolynomialDecay(4, 1e-4, power=2.0, cycle=True),
    "CosineDecay": lambda: schedules.CosineDecay(5, alpha=0.1),
    "CosineDecayRestarts": lambda: schedules.CosineDecayRestarts(3),
    "LinearCosineDecay": lambda: schedules.LinearCosineDecay(6),
    "NoisyLinearCosineDecay": lambda: schedules.NoisyLinearCosineDecay(6, seed=3),
    "PiecewiseConstant": lambda: schedules.PiecewiseConstant([2, 5], [0.1, 0.05, 0.01]),
    "LinearWarmup": lambda: schedules.LinearWarmup(schedules.CosineAnnealingLR(5), 3, 0.0, 0.1),
    "WarmupStableDecay": lambda: schedules.WarmupStableDecay(2, 3, 4, decay_type="1-sqrt"),
    "InverseSqrt": lambda: schedules.InverseSqrt(3),
    "WarmupCosine": lambda: schedules.WarmupCosine(2, 8, end_factor=0.1, exponent=2.0),
    "SWALR": lambda: schedules.SWALR(0.01, anneal_epochs=3),
    "RelativeWarmup": lambda: schedules.RelativeWarmup(schedules.CosineDecay(6), 2),
    "JoinSchedules": lambda: schedules.JoinSchedules(
        [schedules.ConstantLR(0.5, 0), schedules.ExponentialLR(0.8), schedules.StepLR(2)],
        [3, 2]),
    "PiecewiseInterpolate": lambda: schedules.PiecewiseInterpolate("cosine", {2: 0.5, 6: 0.1}),
    "LinearOneCycle": lambda: schedules.LinearOneCycle(8, 0.1, pct_final=0.6),
    "LinearWithWarmup": lambda: schedules.LinearWithWarmup(2, 8),
    "CosineWithWarmup": lambda: schedules.CosineWithWarmup(2, 8, num_cycles=0.7,
                                                           min_lr_rate=0.1),
    "CosineWithHardRestarts": lambda: schedules.CosineWithHardRestarts(1, 9, num_cycles=2),
    "PolynomialWithWarmup": lambda: schedules.PolynomialWithWarmup(2, 8, lr_init=0.1,
                                                                   lr_end=1e-3, power=2.0),
    "CosineWarmupWithMinLR": lambda: schedules.CosineWarmupWithMinLR(2, 8, min_lr_rate=0.1),
}


def _exported_schedule_names() -> list[str]:
    names = getattr(schedules, "__all__", None) or [n for n in dir(schedules) if n[0] != "_"]
    base = schedules.Schedule
    out = []
    for name in names:
        obj = getattr(schedules, name)
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base:
            if not inspect.isabstract(obj):
                out.append(name)
    return sorted(out)


def _example(name: str):
    if name in EXAMPLES:
        return EXAMPLES[name]()
    return getattr(schedules, name)()  # generic: a schedule whose arguments all have defaults


SCHEDULE_NAMES = _exported_schedule_names()


def test_every_schedule_has_an_example():
    missing = []
    for name in SCHEDULE_NAMES:
        try:
            spec = _example(name)
        except TypeError:
            missing.append(name)
            continue
        assert isinstance(spec, schedules.Schedule)
    assert not missing, (
        f"exported schedules {missing} have no example in tests/test_sync_guard.py EXAMPLES"
    )


def _forbidden(what):
    def fail(*args, **kwargs):
        raise AssertionError(f"host sync: {what} called inside a guarded region")

    return fail


@pytest.fixture
def guard(monkeypatch):
    """A context manager: inside it, any host read of a tensor raises."""

    class Guard:
        def __enter__(self):
            self._mp = pytest.MonkeyPatch()
            for attr in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__",
                         "__index__"):
                self._mp.setattr(torch.Tensor, attr, _forbidden(f"Tensor.{attr}"))
            self._mp.setattr(torch.cuda, "synchronize", _forbidden("torch.cuda.synchronize"))
            self._mp.setattr(torch.cuda.Stream, "synchronize", _forbidden("Stream.synchronize"))
            self._mp.setattr(torch.cuda.Event, "synchronize", _forbidden("Event.synchronize"))
            return self

        def __exit__(self, *exc):
            self._mp.undo()
            return False

    return Guard()


def test_guard_catches_a_sync(guard):
    t = torch.ones(())
    with guard, pytest.raises(AssertionError, match="host sync"):
        float(t)
    with guard, pytest.raises(AssertionError, match="host sync"):
        if t > 0:  # Python branching on a tensor value
            pass
    with guard, pytest.raises(AssertionError, match="host sync"):
        t.item()
    assert float(t) == 1.0  # restored


def _make(opt_cls, spec, **kw):
    torch.manual_seed(0)
    a = torch.randn(5, 3, dtype=torch.float32)
    b = torch.randn(7, dtype=torch.float64)
    c = torch.randn(4, dtype=torch.float32)
    extra = dict(momentum=0.9) if opt_cls is fusedlr.SGD else {}
    opt = opt_cls(
        [
            {"params": [a, b], "schedule": spec},
            {"params": [c], "lr": 0.05, "schedule": None},  # a group without schedule
        ],
        lr=0.1,
        **extra,
        **kw,
    )
    params = [a, b, c]
    for p in params:
        p.grad = torch.randn_like(p)
    return opt, params


OPTIMIZERS = [fusedlr.SGD, fusedlr.Adam, fusedlr.AdamW]


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("opt_cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_no_sync(guard, opt_cls, name):
    spec = _example(name)
    opt, params = _make(opt_cls, spec)
    plateau = fusedlr.ReduceLROnPlateau(opt, patience=0, factor=0.5, eps=0.0)
    before = [p.clone() for p in params]
    metric = torch.tensor(1.0)
    with guard:
        for _ in range(4):  # the first step creates the state: guarded too
            opt.step()
            plateau.step(metric)
            lrs = plateau.get_last_lr()
            lrs_opt = opt.get_last_lr()
            moms = opt.get_last_momentum()
        plateau.step(2.0)  # a Python float metric
    assert all(not torch.equal(p, q) for p, q in zip(params, before, strict=True))
    # what the guarded code computed is right: schedule at t=4, halved by the plateau 3 times
    # (the first metric sets the baseline; a zero scheduled lr is not reduced).
    scheduled = spec.values(5, base_lr=0.1).tolist()
    halvings = sum(1 for v in scheduled[1:4] if v > 0)
    assert float(lrs[0]) == pytest.approx(scheduled[4] * 0.5**halvings, rel=1e-12)
    assert float(lrs[1]) == pytest.approx(0.05 * 0.125, rel=1e-12)
    assert [float(x) for x in lrs] == [float(x) for x in lrs_opt]
    assert len(moms) == 2


@pytest.mark.parametrize("opt_cls", OPTIMIZERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("skip", [False, True])
def test_no_sync_with_grad_scaler(guard, opt_cls, skip):
    """GradScaler's step path for _step_supports_amp_scaling optimizers, and the optimizer's use
    of grad_scale / found_inf, including skip_schedule_on_inf, never read a host value."""
    opt, params = _make(opt_cls, schedules.CosineAnnealingLR(6), skip_schedule_on_inf=skip)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    for i in range(4):
        scaler.scale(torch.ones(()))  # creates the scale on first use, as a real loop does
        for p in params:
            p.grad = torch.randn_like(p) * 4.0
        if i == 1:
            params[0].grad[0, 0] = float("inf")
        with guard:
            scaler.step(opt)
        scaler.update()
    expected = 3 if skip else 4
    assert int(opt.schedule_counter) == expected


def test_no_sync_plateau_in_every_mode(guard):
    for mode in ("min", "max"):
        for threshold_mode in ("rel", "abs"):
            opt, _ = _make(fusedlr.Adam, None)
            plateau = fusedlr.ReduceLROnPlateau(opt, mode=mode, threshold_mode=threshold_mode,
                                                cooldown=2, patience=1)
            with guard:
                for m in (3.0, 2.0, 2.0, 2.0, 1.0):
                    plateau.step(torch.tensor(m, dtype=torch.float32))
                plateau.get_last_lr()


@pytest.mark.parametrize("name", ["CosineAnnealingLR", "WarmupStableDecay", "LambdaLR", None])
@pytest.mark.parametrize("opt_cls", [fusedlr.SGDScheduleFree, fusedlr.AdamWScheduleFree],
                         ids=lambda c: c.__name__)
def test_no_sync_schedule_free(guard, opt_cls, name):
    """step(), train() and eval() of the schedule-free optimizers read no host value, with a
    schedule or with the package's linear warmup, including the first (state-creating) step."""
    spec = _example(name) if name else None
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(7, dtype=torch.float64), torch.randn(4)]
    opt = opt_cls([{"params": params[:2], "schedule": spec},
                   {"params": params[2:], "lr": 0.05, "schedule": None, "warmup_steps": 3}],
                  lr=0.1, weight_decay=0.01)
    before = [p.clone() for p in params]
    with guard:
        opt.train()
        for k in range(6):
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
            if k == 2:
                opt.eval()
                opt.train()
        opt.eval()
    assert all(not torch.equal(p, q) for p, q in zip(params, before, strict=True))
    assert opt.device_scalars()[:, 0].tolist() == [6.0, 6.0]
