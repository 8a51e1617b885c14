"""Every torch-named schedule against ``torch.optim.lr_scheduler`` on a ``torch.optim.SGD``.

For each case, a fusedlr.SGD (schedule on the device) and a torch.optim.SGD + scheduler with the
same param groups (different base lrs) take the same steps; before every step the lr (and, for
CyclicLR / OneCycleLR, the momentum) of every group must agree to 1e-9 relative, over several
cycles and past every horizon.
"""

from __future__ import annotations

import math
import pickle
import random
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as tls

import fusedlr
from fusedlr import reference
from fusedlr import schedules as fs

GROUP_LRS = (0.1, 0.05, 0.3)
RTOL = 1e-9


def _groups():
    return [{"params": [torch.zeros(3, dtype=torch.float64)], "lr": lr} for lr in GROUP_LRS]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * max(abs(a), abs(b)) + 1e-300


def trajectories(spec, make_torch, steps, *, momentum=False, sgd_momentum=0.0):
    """(fused, torch) per-step lists of per-group lr (and momentum) tuples."""
    t_groups, f_groups = _groups(), _groups()
    t_opt = torch.optim.SGD(t_groups, lr=0.1, momentum=sgd_momentum)
    f_opt = fusedlr.SGD(f_groups, lr=0.1, momentum=sgd_momentum, schedule=spec)
    sched = make_torch(t_opt)
    fused, ref = [], []
    for k in range(steps):
        f_lr = [float(x) for x in f_opt.get_last_lr()]
        t_lr = [float(x) for x in sched.get_last_lr()]
        if momentum:
            f_lr += [float(x) for x in f_opt.get_last_momentum()]
            t_lr += [g["momentum"] for g in t_opt.param_groups]
        fused.append(f_lr)
        ref.append(t_lr)
        if k == steps - 1:
            break
        for opt in (t_opt, f_opt):
            for g in opt.param_groups:
                for p in g["params"]:
                    p.grad = torch.ones_like(p)
            opt.step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched.step()
    return fused, ref


def assert_same(spec, make_torch, steps, **kw):
    fused, ref = trajectories(spec, make_torch, steps, **kw)
    for t, (f, r) in enumerate(zip(fused, ref, strict=True)):
        assert all(_close(a, b) for a, b in zip(f, r, strict=True)), (t, f, r)


def _lam(t):
    return 1.0 / (1.0 + 0.1 * t)


def _mul(t):
    return 0.97 if t % 3 else 1.01


# (id, fusedlr spec, torch scheduler factory, steps)
CORE = [
    ("StepLR", fs.StepLR(7, 0.5), lambda o: tls.StepLR(o, 7, 0.5), 40),
    ("MultiStepLR", fs.MultiStepLR([3, 8, 8, 20], 0.3),
     lambda o: tls.MultiStepLR(o, [3, 8, 8, 20], 0.3), 30),
    ("ConstantLR", fs.ConstantLR(0.25, 6), lambda o: tls.ConstantLR(o, 0.25, 6), 20),
    ("LinearLR", fs.LinearLR(0.2, 0.9, 10), lambda o: tls.LinearLR(o, 0.2, 0.9, 10), 25),
    ("ExponentialLR", fs.ExponentialLR(0.93), lambda o: tls.ExponentialLR(o, 0.93), 40),
    ("PolynomialLR", fs.PolynomialLR(12, 2.0), lambda o: tls.PolynomialLR(o, 12, 2.0), 30),
    ("CosineAnnealingLR", fs.CosineAnnealingLR(10, 0.001),
     lambda o: tls.CosineAnnealingLR(o, 10, 0.001), 65),
    ("LambdaLR", fs.LambdaLR(_lam, total_steps=40), lambda o: tls.LambdaLR(o, _lam), 40),
    ("MultiplicativeLR", fs.MultiplicativeLR(_mul, total_steps=40),
     lambda o: tls.MultiplicativeLR(o, _mul), 40),
    ("SequentialLR", fs.SequentialLR([fs.LinearLR(0.1, 1.0, 5), fs.ExponentialLR(0.9)], [5]),
     lambda o: tls.SequentialLR(o, [tls.LinearLR(o, 0.1, 1.0, 5), tls.ExponentialLR(o, 0.9)],
                                [5]), 30),
    ("ChainedScheduler", fs.ChainedScheduler([fs.StepLR(4, 0.5), fs.ExponentialLR(0.95)]),
     lambda o: tls.ChainedScheduler([tls.StepLR(o, 4, 0.5), tls.ExponentialLR(o, 0.95)]), 30),
]

WARM_RESTARTS = [
    ("T_mult=1", fs.CosineAnnealingWarmRestarts(5),
     lambda o: tls.CosineAnnealingWarmRestarts(o, 5), 40),
    ("T_mult=2,eta_min", fs.CosineAnnealingWarmRestarts(3, 2, 0.002),
     lambda o: tls.CosineAnnealingWarmRestarts(o, 3, 2, 0.002), 60),
    ("T_mult=3", fs.CosineAnnealingWarmRestarts(2, 3, 0.01),
     lambda o: tls.CosineAnnealingWarmRestarts(o, 2, 3, 0.01), 90),
]


@pytest.mark.parametrize("spec,make,steps", [c[1:] for c in CORE], ids=[c[0] for c in CORE])
def test_core_schedules_match_torch(spec, make, steps):
    assert_same(spec, make, steps)


@pytest.mark.parametrize("spec,make,steps", [c[1:] for c in WARM_RESTARTS],
                         ids=[c[0] for c in WARM_RESTARTS])
def test_cosine_annealing_warm_restarts_matches_torch(spec, make, steps):
    assert_same(spec, make, steps)


def _half(x):
    return 1.0 / (2.0 ** (x - 1)) * 0.9 + 0.1


def _decay(x):
    return 0.995 ** x


CYCLIC = [
    ("triangular", dict(base_lr=0.01, max_lr=0.2, step_size_up=4), {}),
    ("triangular-asym", dict(base_lr=0.01, max_lr=0.2, step_size_up=3, step_size_down=7), {}),
    ("triangular2", dict(base_lr=[0.01, 0.02, 0.005], max_lr=[0.2, 0.1, 0.4], step_size_up=5,
                         mode="triangular2", base_momentum=[0.8, 0.7, 0.85],
                         max_momentum=[0.9, 0.95, 0.9]), {}),
    ("exp_range", dict(base_lr=0.01, max_lr=0.2, step_size_up=4, step_size_down=2,
                       mode="exp_range", gamma=0.97), {}),
    ("scale_fn-cycle", dict(base_lr=0.01, max_lr=0.2, step_size_up=3, scale_fn=_half), {}),
    ("scale_fn-iterations", dict(base_lr=0.01, max_lr=0.2, step_size_up=3, scale_fn=_decay,
                                 scale_mode="iterations"), {}),
    ("no-momentum", dict(base_lr=0.01, max_lr=0.2, step_size_up=4, cycle_momentum=False), {}),
]


@pytest.mark.parametrize("kwargs,_", [c[1:] for c in CYCLIC], ids=[c[0] for c in CYCLIC])
def test_cyclic_lr_matches_torch(kwargs, _):
    steps = 45  # >= 3 cycles for every case
    extra = {"total_steps": steps} if "scale_fn" in kwargs else {}
    spec = fs.CyclicLR(**kwargs, **extra)
    assert spec.cycles_momentum() == kwargs.get("cycle_momentum", True)
    assert_same(spec, lambda o: tls.CyclicLR(o, **kwargs), steps,
                momentum=spec.cycle_momentum, sgd_momentum=0.5)


def test_cyclic_lr_custom_scale_fn_past_the_table_holds_the_last_scale():
    spec = fs.CyclicLR(0.01, 0.2, 3, scale_fn=_decay, scale_mode="iterations", total_steps=10)
    lrs = spec.values(20).tolist()
    # past the table the scale is _decay(9): lr = base + (max - base) * f(t) * 0.995 ** 9
    for t in range(10, 20):
        x = 1.0 + t / 6.0 - math.floor(1 + t / 6.0)
        f = x / 0.5 if x <= 0.5 else (x - 1) / (0.5 - 1)
        assert lrs[t] == pytest.approx(0.01 + (0.2 - 0.01) * f * 0.995**9, rel=1e-12)


ONE_CYCLE = [
    ("cos", dict(max_lr=0.3, total_steps=40)),
    ("linear", dict(max_lr=[0.3, 0.1, 0.5], total_steps=37, anneal_strategy="linear",
                    pct_start=0.25)),
    ("three_phase", dict(max_lr=0.3, total_steps=50, three_phase=True, div_factor=10.0,
                         final_div_factor=100.0)),
    ("three_phase-linear", dict(max_lr=[0.3, 0.2, 0.1], total_steps=31, three_phase=True,
                                anneal_strategy="linear", base_momentum=[0.8, 0.85, 0.7],
                                max_momentum=[0.9, 0.95, 0.99])),
    ("epochs", dict(max_lr=0.3, epochs=4, steps_per_epoch=9, pct_start=0.4)),
    ("no-momentum", dict(max_lr=0.3, total_steps=20, cycle_momentum=False)),
]


@pytest.mark.parametrize("kwargs", [c[1] for c in ONE_CYCLE], ids=[c[0] for c in ONE_CYCLE])
def test_one_cycle_lr_matches_torch_up_to_total_steps(kwargs):
    spec = fs.OneCycleLR(**kwargs)
    total = spec._n
    # torch evaluates t = 0 .. total_steps (it raises after); so must we agree on all of them
    assert_same(spec, lambda o: tls.OneCycleLR(o, **kwargs), total + 1,
                momentum=spec.cycle_momentum, sgd_momentum=0.5)


@pytest.mark.parametrize("kwargs", [c[1] for c in ONE_CYCLE], ids=[c[0] for c in ONE_CYCLE])
def test_one_cycle_lr_past_total_steps_holds_the_final_value(kwargs):
    # Deliberate deviation: torch raises for t > total_steps; the device holds t = total - 1.
    spec = fs.OneCycleLR(**kwargs)
    total = spec._n
    for group in range(3 if isinstance(spec.max_lr, tuple) else 1):
        lrs = spec.values(total + 20, group=group).tolist()
        moms = spec.momentum_values(total + 20, group=group).tolist()
        max_lr = spec.max_lr[group] if isinstance(spec.max_lr, tuple) else spec.max_lr
        assert lrs[total - 1] == pytest.approx(max_lr / spec.div_factor / spec.final_div_factor,
                                               rel=1e-12)
        assert lrs[total + 1:] == [lrs[total - 1]] * 19
        if spec.cycle_momentum:
            assert moms[total + 1:] == [moms[total - 1]] * 19
        else:
            assert all(math.isnan(m) for m in moms)


def test_sequential_of_chained_matches_reference():
    """torch cannot nest a ChainedScheduler or SequentialLR inside a SequentialLR (its get_lr
    raises NotImplementedError), so this nesting is checked against fusedlr.reference."""
    spec = fs.SequentialLR(
        [fs.LinearLR(0.1, 1.0, 4),
         fs.ChainedScheduler([fs.StepLR(3, 0.5), fs.ExponentialLR(0.97)]),
         fs.SequentialLR([fs.ConstantLR(0.5, 3), fs.CosineAnnealingWarmRestarts(4)], [5])],
        [4, 15],
    )
    f_opt = fusedlr.SGD(_groups(), lr=0.1, schedule=spec)
    for t in range(40):
        got = [float(x) for x in f_opt.get_last_lr()]
        want = [reference.schedule_lr(spec, t, lr, g) for g, lr in enumerate(GROUP_LRS)]
        assert all(_close(a, b) for a, b in zip(got, want, strict=True)), (t, got, want)
        f_opt.step()


def test_chained_of_sequential_and_chained_like_torch():
    """torch's SequentialLR restarts its next child from the closed form at a milestone, which
    inside a ChainedScheduler drops the factors the other children applied before it; the other
    children here are still 1 at the milestone (t = 4), so torch's trajectory is the product."""

    def make(o):
        seq = tls.SequentialLR(o, [tls.ConstantLR(o, 0.5, 4), tls.ExponentialLR(o, 0.9)], [4])
        inner = tls.ChainedScheduler([tls.StepLR(o, 5, 0.5), tls.MultiStepLR(o, [9], 0.3)])
        return tls.ChainedScheduler([seq, tls.MultiStepLR(o, [6, 12], 0.5), inner])

    spec = fs.ChainedScheduler([
        fs.SequentialLR([fs.ConstantLR(0.5, 4), fs.ExponentialLR(0.9)], [4]),
        fs.MultiStepLR([6, 12], 0.5),
        fs.ChainedScheduler([fs.StepLR(5, 0.5), fs.MultiStepLR([9], 0.3)]),
    ])
    assert_same(spec, make, 25)


def test_sequential_warmup_then_warm_restarts_like_torch():
    def make(o):
        return tls.SequentialLR(
            o, [tls.LinearLR(o, 0.01, 1.0, 5), tls.CosineAnnealingWarmRestarts(o, 4, 2, 0.001)],
            [5])

    spec = fs.SequentialLR(
        [fs.LinearLR(0.01, 1.0, 5), fs.CosineAnnealingWarmRestarts(4, 2, 0.001)], [5])
    assert_same(spec, make, 40)


def test_cycling_momentum_reaches_the_sgd_update():
    """One SGD step with CyclicLR's momentum equals torch's (momentum buffers allocated)."""
    kw = dict(base_lr=0.01, max_lr=0.2, step_size_up=2, base_momentum=0.5, max_momentum=0.9)
    p_t = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    p_f = p_t.clone()
    t_opt = torch.optim.SGD([p_t], lr=0.1, momentum=0.0)
    t_opt.param_groups[0]["momentum"] = 0.0
    sched = tls.CyclicLR(t_opt, **kw)
    f_opt = fusedlr.SGD([p_f], lr=0.1, momentum=0.0, schedule=fs.CyclicLR(**kw))
    for k in range(7):
        g = torch.tensor([0.5, 0.25, -1.0], dtype=torch.float64) * (k + 1)
        p_t.grad, p_f.grad = g.clone(), g.clone()
        t_opt.step()
        f_opt.step()
        sched.step()
        torch.testing.assert_close(p_f, p_t, rtol=1e-12, atol=0)


@pytest.mark.parametrize("spec", [
    fs.CyclicLR([0.01, 0.02, 0.03], 0.2, 3, scale_fn=_half, total_steps=30),
    fs.OneCycleLR([0.3, 0.2, 0.1], 25, three_phase=True),
    fs.LinearWarmup(fs.NoisyLinearCosineDecay(20, seed=3), 4, 0.0, 0.1),
    fs.PiecewiseConstant([3, 9], [0.3, 0.2, 0.1]),
], ids=lambda s: type(s).__name__)
def test_state_dict_round_trip_mid_run(spec):
    """A run resumed from state_dict (schedule stored as data, scale_fn as its table) continues
    with exactly the lrs and momenta of the uninterrupted run."""
    opt = fusedlr.SGD(_groups(), lr=0.1, schedule=spec)
    for _ in range(7):
        opt.step()
    state = pickle.loads(pickle.dumps(opt.state_dict()))
    resumed = fusedlr.SGD(_groups(), lr=0.1, schedule=fs.ConstantLR(0.5, 1))
    resumed.load_state_dict(state)
    for _ in range(15):
        assert [float(x) for x in resumed.get_last_lr()] == [float(x) for x in opt.get_last_lr()]
        a = [float(x) for x in resumed.get_last_momentum()]
        assert a == [float(x) for x in opt.get_last_momentum()]
        opt.step()
        resumed.step()


def test_multistep_lr_unsorted_milestones_like_torch():
    """torch keeps milestones in a Counter: any order, repeats counting once each."""
    rng = random.Random(random.SystemRandom().randrange(2**32))
    milestones = [rng.randrange(0, 30) for _ in range(rng.randrange(1, 9))]
    gamma = rng.uniform(0.2, 0.95)
    spec = fs.MultiStepLR(milestones, gamma)
    assert spec.milestones == tuple(sorted(milestones))
    assert spec == fs.MultiStepLR(sorted(milestones, reverse=True), gamma)
    assert_same(spec, lambda o: tls.MultiStepLR(o, milestones, gamma), 40)


SWALR_CASES = [
    ("cos", dict(swa_lr=0.01, anneal_epochs=10)),
    ("linear-per-group", dict(swa_lr=[0.01, 0.2, 0.003], anneal_epochs=23,
                              anneal_strategy="linear")),
    ("cos-per-group-long", dict(swa_lr=[0.04, 0.001, 0.5], anneal_epochs=97)),
    ("anneal_epochs=0", dict(swa_lr=[0.02, 0.3, 0.001], anneal_epochs=0)),
    ("anneal_epochs=0-linear", dict(swa_lr=0.07, anneal_epochs=0, anneal_strategy="linear")),
    ("anneal_epochs=1", dict(swa_lr=[0.02, 0.3, 0.001], anneal_epochs=1)),
    ("anneal_epochs=1-linear", dict(swa_lr=0.5, anneal_epochs=1, anneal_strategy="linear")),
    ("swa_lr-above-lr", dict(swa_lr=0.9, anneal_epochs=7)),
]


@pytest.mark.parametrize("kwargs", [c[1] for c in SWALR_CASES], ids=[c[0] for c in SWALR_CASES])
def test_swalr_matches_torch(kwargs):
    """torch's SWALR (recursive: it inverts its own previous blend every step) against the
    closed form, per group, well past the annealing."""
    from torch.optim.swa_utils import SWALR

    spec = fs.SWALR(**kwargs)
    assert_same(spec, lambda o: SWALR(o, **kwargs), kwargs["anneal_epochs"] + 60)


def test_swalr_random_against_torch():
    rng = random.Random(random.SystemRandom().randrange(2**32))
    from torch.optim.swa_utils import SWALR

    for _ in range(5):
        kw = dict(swa_lr=[rng.uniform(0.0, 0.6) for _ in GROUP_LRS],
                  anneal_epochs=rng.randrange(0, 50),
                  anneal_strategy=rng.choice(["cos", "linear"]))
        assert_same(fs.SWALR(**kw), lambda o, kw=kw: SWALR(o, **kw), kw["anneal_epochs"] + 20)
