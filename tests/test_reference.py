"""Tests of the independent oracle ``fusedlr.reference``.

torch-named schedules and the optimizers are checked against torch itself; TF/Keras, Paddle, HF
and optax schedules against values worked by hand from the published formulas.  Schedule specs
are stand-in objects whose class name is the schedule name (the dispatcher looks only at that).
"""

import importlib.util
import math
import pathlib
import random

import pytest
import torch
from torch.optim import lr_scheduler as sch

try:
    from fusedlr import reference as ref
except ImportError:  # package needs the built extension; the oracle itself needs only torch
    _path = pathlib.Path(__file__).resolve().parents[1] / "fusedlr" / "reference.py"
    _module_spec = importlib.util.spec_from_file_location("fusedlr_reference", _path)
    ref = importlib.util.module_from_spec(_module_spec)
    _module_spec.loader.exec_module(ref)

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")

BASES = (0.1, 0.05, 0.3)

_DEFAULTS = {
    "StepLR": dict(gamma=0.1),
    "MultiStepLR": dict(gamma=0.1),
    "ConstantLR": dict(factor=1.0 / 3, total_iters=5),
    "LinearLR": dict(start_factor=1.0 / 3, end_factor=1.0, total_iters=5),
    "ExponentialLR": dict(),
    "PolynomialLR": dict(total_iters=5, power=1.0),
    "CosineAnnealingLR": dict(eta_min=0.0),
    "SequentialLR": dict(),
    "ChainedScheduler": dict(),
    "LambdaLR": dict(),
    "MultiplicativeLR": dict(),
    "CosineAnnealingWarmRestarts": dict(T_mult=1, eta_min=0.0),
    "CyclicLR": dict(
        step_size_up=2000,
        step_size_down=None,
        mode="triangular",
        gamma=1.0,
        scale_fn=None,
        scale_mode="cycle",
        cycle_momentum=True,
        base_momentum=0.8,
        max_momentum=0.9,
    ),
    "OneCycleLR": dict(
        total_steps=None,
        epochs=None,
        steps_per_epoch=None,
        pct_start=0.3,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
    ),
    "NoamDecay": dict(),
    "ExponentialDecay": dict(staircase=False),
    "NaturalExpDecay": dict(staircase=False),
    "InverseTimeDecay": dict(staircase=False),
    "PolynomialDecay": dict(end_learning_rate=1e-4, power=1.0, cycle=False),
    "CosineDecay": dict(alpha=0.0),
    "CosineDecayRestarts": dict(t_mul=2.0, m_mul=1.0, alpha=0.0),
    "LinearCosineDecay": dict(num_periods=0.5, alpha=0.0, beta=0.001),
    "NoisyLinearCosineDecay": dict(
        initial_variance=1.0, variance_decay=0.55, num_periods=0.5, alpha=0.0, beta=0.001, seed=0
    ),
    "PiecewiseConstant": dict(),
    "LinearWarmup": dict(),
    "WarmupStableDecay": dict(min_lr_ratio=0.0, warmup_type="linear", decay_type="linear"),
    "InverseSqrt": dict(timescale=None),
    "WarmupCosine": dict(end_factor=0.0),
}
_CLASSES = {}


def spec(name, **kwargs):
    """A stand-in spec: class named ``name``, attributes = defaults updated by ``kwargs``."""
    cls = _CLASSES.setdefault(name, type(name, (), {}))
    obj = cls()
    obj.__dict__.update(_DEFAULTS[name])
    obj.__dict__.update({k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    return obj


def close(a, b, rel=1e-12):
    return abs(a - b) <= rel * max(abs(a), abs(b)) or a == b


def fresh_seed():
    return random.SystemRandom().randrange(2**62)


# --------------------------------------------------------------------------------------------
# torch-named schedules against torch.optim.lr_scheduler on torch.optim.SGD


def torch_trajectory(make, n, bases=BASES, opt_cls=torch.optim.SGD, **opt_kwargs):
    """(lrs, momenta) of every group for t = 0..n-1 with ``opt.step(); sched.step()``."""
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in bases]
    opt = opt_cls(
        [{"params": [p], "lr": b} for p, b in zip(params, bases, strict=True)], **opt_kwargs
    )
    sched = make(opt)
    lrs, moms = [], []
    for t in range(n):
        if t:
            opt.step()
            sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append([g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups])
    return lrs, moms


def _lam(e):
    return 0.97**e + 0.002 * (e % 4)


def _mul(e):
    return 0.9 + 0.03 * (e % 3)


def _scale(x):
    return 1.0 / (1.0 + 0.1 * x)


TORCH_CASES = {
    "step": (spec("StepLR", step_size=3, gamma=0.5), lambda o: sch.StepLR(o, 3, 0.5), 20),
    "step_default": (spec("StepLR", step_size=4), lambda o: sch.StepLR(o, 4), 20),
    "multistep_dup": (
        spec("MultiStepLR", milestones=[2, 5, 5, 9], gamma=0.3),
        lambda o: sch.MultiStepLR(o, [2, 5, 5, 9], 0.3),
        15,
    ),
    "multistep_zero": (
        spec("MultiStepLR", milestones=[0, 4]),
        lambda o: sch.MultiStepLR(o, [0, 4]),
        8,
    ),
    "constant": (
        spec("ConstantLR", factor=0.25, total_iters=4),
        lambda o: sch.ConstantLR(o, 0.25, 4),
        12,
    ),
    "constant_default": (spec("ConstantLR"), lambda o: sch.ConstantLR(o), 10),
    "constant_zero_iters": (
        spec("ConstantLR", factor=0.5, total_iters=0),
        lambda o: sch.ConstantLR(o, 0.5, 0),
        6,
    ),
    "linear_up": (
        spec("LinearLR", start_factor=0.2, end_factor=0.9, total_iters=6),
        lambda o: sch.LinearLR(o, 0.2, 0.9, 6),
        14,
    ),
    "linear_down": (
        spec("LinearLR", start_factor=1.0, end_factor=0.1, total_iters=7),
        lambda o: sch.LinearLR(o, 1.0, 0.1, 7),
        14,
    ),
    "linear_default": (spec("LinearLR"), lambda o: sch.LinearLR(o), 9),
    "exponential": (spec("ExponentialLR", gamma=0.93), lambda o: sch.ExponentialLR(o, 0.93), 60),
    "polynomial": (
        spec("PolynomialLR", total_iters=7, power=2.0),
        lambda o: sch.PolynomialLR(o, 7, 2.0),
        15,
    ),
    "polynomial_sqrt": (
        spec("PolynomialLR", total_iters=9, power=0.5),
        lambda o: sch.PolynomialLR(o, 9, 0.5),
        15,
    ),
    "polynomial_default": (spec("PolynomialLR"), lambda o: sch.PolynomialLR(o), 9),
    "cosine": (
        spec("CosineAnnealingLR", T_max=7, eta_min=0.01),
        lambda o: sch.CosineAnnealingLR(o, 7, 0.01),
        60,
    ),
    "cosine_zero": (
        spec("CosineAnnealingLR", T_max=11),
        lambda o: sch.CosineAnnealingLR(o, 11),
        80,
    ),
    "sequential": (
        spec(
            "SequentialLR",
            schedules=(
                spec("LinearLR", start_factor=0.1, total_iters=4),
                spec("CosineAnnealingWarmRestarts", T_0=3, T_mult=2, eta_min=0.001),
                spec("ExponentialLR", gamma=0.9),
                spec("CosineAnnealingLR", T_max=5),
            ),
            milestones=(5, 20, 26),
        ),
        lambda o: sch.SequentialLR(
            o,
            [
                sch.LinearLR(o, 0.1, total_iters=4),
                sch.CosineAnnealingWarmRestarts(o, 3, 2, 0.001),
                sch.ExponentialLR(o, 0.9),
                sch.CosineAnnealingLR(o, 5),
            ],
            [5, 20, 26],
        ),
        45,
    ),
    "sequential_step_lambda": (
        spec(
            "SequentialLR",
            schedules=(
                spec("StepLR", step_size=2, gamma=0.7),
                spec("LambdaLR", lr_lambda=_lam, total_steps=100),
                spec("PolynomialLR", total_iters=4, power=1.5),
            ),
            milestones=(6, 13),
        ),
        lambda o: sch.SequentialLR(
            o, [sch.StepLR(o, 2, 0.7), sch.LambdaLR(o, _lam), sch.PolynomialLR(o, 4, 1.5)], [6, 13]
        ),
        25,
    ),
    "chained": (
        spec(
            "ChainedScheduler",
            schedules=(
                spec("ConstantLR", factor=0.1, total_iters=5),
                spec("ExponentialLR", gamma=0.9),
            ),
        ),
        lambda o: sch.ChainedScheduler([sch.ConstantLR(o, 0.1, 5), sch.ExponentialLR(o, 0.9)]),
        25,
    ),
    "chained_many": (
        spec(
            "ChainedScheduler",
            schedules=(
                spec("StepLR", step_size=3, gamma=0.8),
                spec("LinearLR", start_factor=0.5, total_iters=6),
                spec("MultiStepLR", milestones=(4, 9), gamma=0.5),
                spec("PolynomialLR", total_iters=20, power=1.3),
                spec("MultiplicativeLR", lr_lambda=_mul, total_steps=100),
                spec("CosineAnnealingLR", T_max=30),
            ),
        ),
        lambda o: sch.ChainedScheduler(
            [
                sch.StepLR(o, 3, 0.8),
                sch.LinearLR(o, 0.5, total_iters=6),
                sch.MultiStepLR(o, [4, 9], 0.5),
                sch.PolynomialLR(o, 20, 1.3),
                sch.MultiplicativeLR(o, _mul),
                sch.CosineAnnealingLR(o, 30),
            ]
        ),
        20,
    ),
    "lambda": (
        spec("LambdaLR", lr_lambda=_lam, total_steps=40),
        lambda o: sch.LambdaLR(o, _lam),
        40,
    ),
    "lambda_per_group": (
        spec("LambdaLR", lr_lambda=(_lam, _mul, _scale), total_steps=30),
        lambda o: sch.LambdaLR(o, [_lam, _mul, _scale]),
        30,
    ),
    "lambda_table": (
        spec("LambdaLR", lr_lambda=tuple(_lam(e) for e in range(25)), total_steps=25),
        lambda o: sch.LambdaLR(o, _lam),
        25,
    ),
    "multiplicative_table": (  # a table is the running product, as fusedlr.schedules stores it
        spec(
            "MultiplicativeLR",
            lr_lambda=[math.prod(map(_mul, range(1, e + 1))) for e in range(25)],
            total_steps=25,
        ),
        lambda o: sch.MultiplicativeLR(o, _mul),
        25,
    ),
    "multiplicative": (
        spec("MultiplicativeLR", lr_lambda=_mul, total_steps=40),
        lambda o: sch.MultiplicativeLR(o, _mul),
        40,
    ),
    "warm_restarts": (
        spec("CosineAnnealingWarmRestarts", T_0=5, eta_min=0.001),
        lambda o: sch.CosineAnnealingWarmRestarts(o, 5, eta_min=0.001),
        40,
    ),
    "warm_restarts_mult": (
        spec("CosineAnnealingWarmRestarts", T_0=3, T_mult=2),
        lambda o: sch.CosineAnnealingWarmRestarts(o, 3, 2),
        70,
    ),
    "warm_restarts_mult3": (
        spec("CosineAnnealingWarmRestarts", T_0=2, T_mult=3, eta_min=0.002),
        lambda o: sch.CosineAnnealingWarmRestarts(o, 2, 3, 0.002),
        90,
    ),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torch_schedule_matches_torch(case):
    sp, make, n = TORCH_CASES[case]
    lrs, _ = torch_trajectory(make, n)
    for t, row in enumerate(lrs):
        for g, lr in enumerate(row):
            assert close(ref.schedule_lr(sp, t, BASES[g], g), lr), (case, t, g)
            assert ref.schedule_momentum(sp, t, g) is None


CYCLIC_CASES = {
    "triangular": dict(step_size_up=4, step_size_down=6),
    "triangular_sym": dict(step_size_up=5),
    "triangular2": dict(step_size_up=3, step_size_down=5, mode="triangular2"),
    "exp_range": dict(step_size_up=4, step_size_down=3, mode="exp_range", gamma=0.97),
    "scale_fn_cycle": dict(step_size_up=4, scale_fn=_scale, scale_mode="cycle"),
    "scale_fn_iter": dict(step_size_up=3, scale_fn=_scale, scale_mode="iterations"),
    "no_momentum": dict(step_size_up=4, cycle_momentum=False),
    "group_momenta": dict(step_size_up=4, base_momentum=(0.7, 0.8, 0.85), max_momentum=0.95),
}


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
@pytest.mark.parametrize("case", sorted(CYCLIC_CASES))
def test_cyclic_lr_matches_torch(case, opt_cls):
    kw = dict(base_lr=(0.01, 0.02, 0.005), max_lr=0.1, **CYCLIC_CASES[case])
    sp = spec("CyclicLR", **kw)
    torch_kw = dict(kw)
    torch_kw["base_lr"] = list(kw["base_lr"])
    if isinstance(kw.get("base_momentum"), tuple):
        torch_kw["base_momentum"] = list(kw["base_momentum"])
    n = 60  # several cycles
    lrs, moms = torch_trajectory(lambda o: sch.CyclicLR(o, **torch_kw), n, opt_cls=opt_cls)
    for t in range(n):
        for g in range(3):
            assert close(ref.schedule_lr(sp, t, BASES[g], g), lrs[t][g]), (t, g)
            m = ref.schedule_momentum(sp, t, g)
            if kw.get("cycle_momentum", True):
                assert close(m, moms[t][g]), (t, g)
            else:
                assert m is None


ONE_CYCLE_CASES = {
    "cos": dict(total_steps=40),
    "linear": dict(total_steps=37, anneal_strategy="linear", pct_start=0.25),
    "three_phase": dict(total_steps=41, three_phase=True),
    "three_phase_linear": dict(total_steps=30, three_phase=True, anneal_strategy="linear"),
    "epochs": dict(epochs=4, steps_per_epoch=9, div_factor=10.0, final_div_factor=100.0),
    "no_momentum": dict(total_steps=20, cycle_momentum=False),
    "group_momenta": dict(total_steps=23, base_momentum=(0.8, 0.85, 0.7), max_momentum=0.9),
}


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
@pytest.mark.parametrize("case", sorted(ONE_CYCLE_CASES))
def test_one_cycle_lr_matches_torch(case, opt_cls):
    kw = dict(max_lr=(0.1, 0.2, 0.05), **ONE_CYCLE_CASES[case])
    sp = spec("OneCycleLR", **kw)
    torch_kw = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
    total = kw.get("total_steps") or kw["epochs"] * kw["steps_per_epoch"]
    n = total + 1  # torch accepts t == total_steps, raises after
    holder = {}

    def make(o):
        holder["s"] = sch.OneCycleLR(o, **torch_kw)
        return holder["s"]

    lrs, moms = torch_trajectory(make, n, opt_cls=opt_cls)
    for t in range(n):
        for g in range(3):
            assert close(ref.schedule_lr(sp, t, BASES[g], g), lrs[t][g]), (t, g)
            m = ref.schedule_momentum(sp, t, g)
            if kw.get("cycle_momentum", True):
                assert close(m, moms[t][g]), (t, g)
            else:
                assert m is None
    with pytest.raises(ValueError):
        holder["s"].step()
    with pytest.raises(ValueError):
        ref.schedule_lr(sp, n, 0.1)


def test_sequential_and_chained_momentum():
    cyc = spec("CyclicLR", base_lr=0.01, max_lr=0.1, step_size_up=2)
    seq = spec("SequentialLR", schedules=(spec("ExponentialLR", gamma=0.9), cyc), milestones=(3,))
    assert ref.schedule_momentum(seq, 2) is None
    assert ref.schedule_momentum(seq, 3) == ref.schedule_momentum(cyc, 0)
    assert ref.schedule_momentum(seq, 5) == ref.schedule_momentum(cyc, 2)
    chain = spec("ChainedScheduler", schedules=(cyc, spec("StepLR", step_size=2)))
    assert ref.schedule_momentum(chain, 1) == ref.schedule_momentum(cyc, 1)
    warm = spec("LinearWarmup", schedule=cyc, warmup_steps=4, start_lr=0.0, end_lr=0.1)
    assert ref.schedule_momentum(warm, 3) is None
    assert ref.schedule_momentum(warm, 5) == ref.schedule_momentum(cyc, 1)


def test_dispatch_errors():
    with pytest.raises(ValueError):
        ref.schedule_lr(spec("StepLR", step_size=2), -1, 0.1)
    with pytest.raises(ValueError):
        ref.schedule_lr(type("NoSuchSchedule", (), {})(), 0, 0.1)
    assert ref.schedule_lr(None, 17, 0.25) == 0.25
    assert ref.schedule_momentum(None, 3) is None
    with pytest.raises(ValueError):
        ref.schedule_lr(spec("WarmupCosine", warmup_steps=5, total_steps=5), 0, 0.1)


# --------------------------------------------------------------------------------------------
# Paddle NoamDecay and TF/Keras, Paddle, HF, optax schedules, worked by hand


def test_noam_decay():
    sp = spec("NoamDecay", d_model=512, warmup_steps=4000)
    assert ref.schedule_lr(sp, 0, 1.0) == 0.0
    assert close(ref.schedule_lr(sp, 100, 2.0), 2.0 * 512**-0.5 * 100 * 4000**-1.5)
    assert close(ref.schedule_lr(sp, 4000, 1.0), 512**-0.5 * 4000**-0.5)
    assert close(ref.schedule_lr(sp, 9000, 0.5), 0.5 * 512**-0.5 * 9000**-0.5)


def test_exponential_decay():
    sp = spec("ExponentialDecay", decay_steps=100, decay_rate=0.96)
    assert ref.schedule_lr(sp, 0, 0.1) == 0.1
    assert close(ref.schedule_lr(sp, 250, 0.1), 0.1 * 0.96 ** (250 / 100))
    assert close(ref.schedule_lr(sp, 37, 0.3), 0.3 * 0.96**0.37)
    st = spec("ExponentialDecay", decay_steps=100, decay_rate=0.96, staircase=True)
    assert close(ref.schedule_lr(st, 250, 0.1), 0.1 * 0.96**2)
    assert ref.schedule_lr(st, 99, 0.1) == 0.1
    assert close(ref.schedule_lr(st, 100, 0.1), 0.1 * 0.96)


def test_natural_exp_decay():
    sp = spec("NaturalExpDecay", decay_steps=10, decay_rate=0.5)
    assert ref.schedule_lr(sp, 0, 0.2) == 0.2
    assert close(ref.schedule_lr(sp, 7, 0.2), 0.2 * math.exp(-0.5 * 0.7))
    assert close(ref.schedule_lr(sp, 35, 0.2), 0.2 * math.exp(-0.5 * 3.5))
    st = spec("NaturalExpDecay", decay_steps=10, decay_rate=0.5, staircase=True)
    assert close(ref.schedule_lr(st, 35, 0.2), 0.2 * math.exp(-1.5))
    # Paddle NaturalExpDecay(gamma=0.1): base * exp(-0.1 * t), i.e. decay_steps = 1
    paddle = spec("NaturalExpDecay", decay_steps=1, decay_rate=0.1)
    assert close(ref.schedule_lr(paddle, 12, 0.5), 0.5 * math.exp(-1.2))


def test_inverse_time_decay():
    sp = spec("InverseTimeDecay", decay_steps=1.0, decay_rate=0.5)
    assert ref.schedule_lr(sp, 0, 0.1) == 0.1
    assert close(ref.schedule_lr(sp, 3, 0.1), 0.1 / (1 + 0.5 * 3))
    sp = spec("InverseTimeDecay", decay_steps=20, decay_rate=0.3)
    assert close(ref.schedule_lr(sp, 50, 0.1), 0.1 / (1 + 0.3 * 2.5))
    st = spec("InverseTimeDecay", decay_steps=20, decay_rate=0.3, staircase=True)
    assert close(ref.schedule_lr(st, 50, 0.1), 0.1 / (1 + 0.3 * 2))


def test_polynomial_decay():
    sp = spec("PolynomialDecay", decay_steps=100, end_learning_rate=0.01, power=0.5)
    assert ref.schedule_lr(sp, 0, 0.1) == 0.1
    assert close(ref.schedule_lr(sp, 30, 0.1), (0.1 - 0.01) * (1 - 30 / 100) ** 0.5 + 0.01)
    assert close(ref.schedule_lr(sp, 100, 0.1), 0.01)
    assert close(ref.schedule_lr(sp, 250, 0.1), 0.01)
    cyc = spec("PolynomialDecay", decay_steps=100, end_learning_rate=0.01, power=2.0, cycle=True)
    assert ref.schedule_lr(cyc, 0, 0.1) == 0.1
    assert close(ref.schedule_lr(cyc, 100, 0.1), 0.01)  # horizon 100 * ceil(1) = 100
    assert close(ref.schedule_lr(cyc, 101, 0.1), (0.1 - 0.01) * (1 - 101 / 200) ** 2 + 0.01)
    assert close(ref.schedule_lr(cyc, 250, 0.1), (0.1 - 0.01) * (1 - 250 / 300) ** 2 + 0.01)
    default = spec("PolynomialDecay", decay_steps=10)
    assert close(ref.schedule_lr(default, 4, 0.1), (0.1 - 1e-4) * 0.6 + 1e-4)


def test_cosine_decay():
    sp = spec("CosineDecay", decay_steps=1000, alpha=0.1)
    assert close(ref.schedule_lr(sp, 0, 0.1), 0.1)
    assert close(
        ref.schedule_lr(sp, 250, 0.1), 0.1 * (0.9 * 0.5 * (1 + math.cos(math.pi / 4)) + 0.1)
    )
    assert close(ref.schedule_lr(sp, 500, 0.1), 0.1 * (0.9 * 0.5 + 0.1))
    assert close(ref.schedule_lr(sp, 1000, 0.1), 0.1 * 0.1)
    assert close(ref.schedule_lr(sp, 5000, 0.1), 0.1 * 0.1)


def test_cosine_decay_restarts():
    sp = spec("CosineDecayRestarts", first_decay_steps=10, t_mul=2.0, m_mul=0.5, alpha=0.1)
    # periods: [0, 10), [10, 30), [30, 70)
    assert close(ref.schedule_lr(sp, 0, 1.0), 1.0)
    assert close(ref.schedule_lr(sp, 5, 1.0), 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)) + 0.1)
    assert close(ref.schedule_lr(sp, 10, 1.0), 0.9 * 0.5 * 0.5 * 2 + 0.1)  # restart, m_mul ** 1
    assert close(
        ref.schedule_lr(sp, 20, 1.0), 0.9 * 0.5 * 0.5 * (1 + math.cos(math.pi * 0.5)) + 0.1
    )
    assert close(ref.schedule_lr(sp, 30, 1.0), 0.9 * 0.25 + 0.1)  # second restart, m_mul ** 2
    assert close(
        ref.schedule_lr(sp, 45, 1.0), 0.9 * 0.25 * 0.5 * (1 + math.cos(math.pi * 15 / 40)) + 0.1
    )
    one = spec("CosineDecayRestarts", first_decay_steps=8, t_mul=1.0, m_mul=0.9)
    assert close(ref.schedule_lr(one, 8, 0.2), 0.2 * 0.9)
    assert close(
        ref.schedule_lr(one, 19, 0.2), 0.2 * 0.9**2 * 0.5 * (1 + math.cos(math.pi * 3 / 8))
    )
    frac = spec("CosineDecayRestarts", first_decay_steps=4, t_mul=1.5)
    # periods of 4, 6, 9 steps: restarts at 4 and 10, t = 13 is 3/9 into the third period
    assert close(ref.schedule_lr(frac, 10, 0.1), 0.1)
    assert close(ref.schedule_lr(frac, 13, 0.1), 0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 9)))
    # t_mul = 3: restarts at 1, 4, 13, 40, 121; Keras' floor(log(1 + 2 * 121) / log(3)) is 4 in
    # float64 (4.999...), which would give alpha * base here instead of the restart value
    three = spec("CosineDecayRestarts", first_decay_steps=1, t_mul=3.0, alpha=0.2)
    assert close(ref.schedule_lr(three, 121, 0.1), 0.1)
    assert close(
        ref.schedule_lr(three, 120, 0.1),
        0.1 * (0.8 * 0.5 * (1 + math.cos(math.pi * 80 / 81)) + 0.2),
    )


def test_linear_cosine_decay():
    sp = spec("LinearCosineDecay", decay_steps=100, num_periods=2.0, alpha=0.1, beta=0.01)
    assert close(ref.schedule_lr(sp, 0, 0.5), 0.5 * ((0.1 + 1.0) * 1.0 + 0.01))
    lin, cos = (100 - 30) / 100, 0.5 * (1 + math.cos(math.pi * 2 * 2.0 * 0.3))
    assert close(ref.schedule_lr(sp, 30, 0.5), 0.5 * ((0.1 + lin) * cos + 0.01))
    assert close(ref.schedule_lr(sp, 100, 0.5), 0.5 * ((0.1 + 0.0) * 1.0 + 0.01))
    assert close(ref.schedule_lr(sp, 180, 0.5), 0.5 * ((0.1 + 0.0) * 1.0 + 0.01))
    default = spec("LinearCosineDecay", decay_steps=10)
    lin, cos = 0.6, 0.5 * (1 + math.cos(math.pi * 0.4))
    assert close(ref.schedule_lr(default, 4, 0.1), 0.1 * (lin * cos + 0.001))


def test_noisy_linear_cosine_decay():
    seed = fresh_seed()
    sp = spec("NoisyLinearCosineDecay", decay_steps=50, initial_variance=0.3, seed=seed)
    for t in (0, 7, 33, 50, 80):
        k = min(t, 50)
        lin = (50 - k) / 50
        std = math.sqrt(0.3 / (1.0 + k) ** 0.55)
        cos = 0.5 * (1 + math.cos(math.pi * 2 * 0.5 * k / 50))
        want = 0.1 * ((0.0 + lin + std * ref.noise_normal(seed, t)) * cos + 0.001)
        assert close(ref.schedule_lr(sp, t, 0.1), want), t
    # deterministic in (seed, t), different across t
    assert ref.schedule_lr(sp, 9, 0.1) == ref.schedule_lr(sp, 9, 0.1)
    assert ref.schedule_lr(sp, 9, 0.1) != ref.schedule_lr(sp, 10, 0.1)


def test_splitmix64_known_values():
    # the SplitMix64 generator seeded with 0 outputs these (Vigna's reference implementation)
    assert ref.splitmix64(0) == 0xE220A8397B1DCDAF
    assert ref.splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    assert ref.splitmix64((2 * 0x9E3779B97F4A7C15) % 2**64) == 0x06C45D188009454F


def test_noise_normal_definition_and_moments():
    seed, t = fresh_seed(), 12345
    x = (seed * 0x9E3779B97F4A7C15 + 2 * t) % 2**64
    h1, h2 = ref.splitmix64(x), ref.splitmix64((x + 1) % 2**64)
    u1, u2 = ((h1 >> 12) + 0.5) / 2**52, ((h2 >> 12) + 0.5) / 2**52
    assert 0.0 < u1 < 1.0 and 0.0 < u2 < 1.0
    assert ref.noise_normal(seed, t) == math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
    assert ref.noise_normal(-1, 5) == ref.noise_normal(2**64 - 1, 5)
    zs = [ref.noise_normal(seed, k) for k in range(20000)]
    mean = sum(zs) / len(zs)
    var = sum((z - mean) ** 2 for z in zs) / len(zs)
    assert abs(mean) < 0.05 and abs(var - 1.0) < 0.05


def test_piecewise_constant():
    sp = spec("PiecewiseConstant", boundaries=(100, 110), values=(1.0, 0.5, 0.1))
    assert ref.schedule_lr(sp, 0, 7.0) == 1.0
    assert ref.schedule_lr(sp, 100, 7.0) == 1.0  # Keras: step <= boundaries[0] -> values[0]
    assert ref.schedule_lr(sp, 101, 7.0) == 0.5
    assert ref.schedule_lr(sp, 110, 7.0) == 0.5
    assert ref.schedule_lr(sp, 111, 7.0) == 0.1
    assert ref.schedule_lr(sp, 10**6, 7.0) == 0.1


def test_linear_warmup():
    inner = spec("ExponentialDecay", decay_steps=10, decay_rate=0.5)
    sp = spec("LinearWarmup", schedule=inner, warmup_steps=20, start_lr=0.0, end_lr=0.5)
    assert ref.schedule_lr(sp, 0, 0.4) == 0.0
    assert close(ref.schedule_lr(sp, 5, 0.4), (0.5 - 0.0) * 5 / 20 + 0.0)
    assert close(ref.schedule_lr(sp, 20, 0.4), 0.4)
    assert close(ref.schedule_lr(sp, 35, 0.4), 0.4 * 0.5 ** (15 / 10))
    const = spec("LinearWarmup", schedule=0.25, warmup_steps=4, start_lr=0.05, end_lr=0.25)
    assert close(ref.schedule_lr(const, 1, 9.0), (0.25 - 0.05) * 1 / 4 + 0.05)
    assert ref.schedule_lr(const, 4, 9.0) == 0.25
    assert ref.schedule_lr(const, 400, 9.0) == 0.25


def test_warmup_stable_decay():
    base = 0.3
    sp = spec("WarmupStableDecay", warmup_steps=10, stable_steps=20, decay_steps=30)
    assert ref.schedule_lr(sp, 0, base) == 0.0
    assert close(ref.schedule_lr(sp, 4, base), base * 0.4)
    assert ref.schedule_lr(sp, 10, base) == base
    assert ref.schedule_lr(sp, 29, base) == base
    assert close(ref.schedule_lr(sp, 30, base), base)
    assert close(ref.schedule_lr(sp, 45, base), base * (1 - 15 / 30))
    assert ref.schedule_lr(sp, 60, base) == 0.0
    r = 0.1
    cos = spec(
        "WarmupStableDecay",
        warmup_steps=8,
        stable_steps=0,
        decay_steps=16,
        min_lr_ratio=r,
        warmup_type="cosine",
        decay_type="cosine",
    )
    f = 0.5 * (1 - math.cos(math.pi * 2 / 8))
    assert close(ref.schedule_lr(cos, 2, base), base * (f * (1 - r) + r))
    f = 0.5 * (1 + math.cos(math.pi * 2.0 * 0.5 * 4 / 16))
    assert close(ref.schedule_lr(cos, 12, base), base * (f * (1 - r) + r))
    assert close(ref.schedule_lr(cos, 24, base), base * r)
    assert close(ref.schedule_lr(cos, 1000, base), base * r)
    sq = spec(
        "WarmupStableDecay",
        warmup_steps=4,
        stable_steps=3,
        decay_steps=9,
        min_lr_ratio=0.2,
        warmup_type="1-sqrt",
        decay_type="1-sqrt",
    )
    assert close(ref.schedule_lr(sq, 1, base), base * ((1 - math.sqrt(1 - 0.25)) * 0.8 + 0.2))
    assert close(ref.schedule_lr(sq, 11, base), base * ((1 - math.sqrt(4 / 9)) * 0.8 + 0.2))
    assert close(ref.schedule_lr(sq, 16, base), base * 0.2)


def test_inverse_sqrt():
    sp = spec("InverseSqrt", warmup_steps=100)
    assert ref.schedule_lr(sp, 0, 0.2) == 0.0
    assert close(ref.schedule_lr(sp, 40, 0.2), 0.2 * 40 / 100)
    assert close(ref.schedule_lr(sp, 100, 0.2), 0.2)
    assert close(ref.schedule_lr(sp, 400, 0.2), 0.2 / math.sqrt(400 / 100))
    ts = spec("InverseSqrt", warmup_steps=10, timescale=50)
    assert close(ref.schedule_lr(ts, 60, 0.2), 0.2 / math.sqrt((60 + 50 - 10) / 50))
    nowarm = spec("InverseSqrt", warmup_steps=0)  # timescale 10_000
    assert ref.schedule_lr(nowarm, 0, 0.2) == 0.2
    assert close(ref.schedule_lr(nowarm, 30000, 0.2), 0.2 / math.sqrt(40000 / 10000))


def test_warmup_cosine():
    sp = spec("WarmupCosine", warmup_steps=10, total_steps=110, end_factor=0.1)
    base = 0.4
    assert ref.schedule_lr(sp, 0, base) == 0.0
    assert close(ref.schedule_lr(sp, 3, base), base * 3 / 10)
    assert close(ref.schedule_lr(sp, 10, base), base)
    assert close(
        ref.schedule_lr(sp, 60, base), base * (0.9 * 0.5 * (1 + math.cos(math.pi / 2)) + 0.1)
    )
    assert close(ref.schedule_lr(sp, 110, base), base * 0.1)
    assert close(ref.schedule_lr(sp, 500, base), base * 0.1)
    nowarm = spec("WarmupCosine", warmup_steps=0, total_steps=8)
    assert close(ref.schedule_lr(nowarm, 0, base), base)
    assert close(ref.schedule_lr(nowarm, 2, base), base * 0.5 * (1 + math.cos(math.pi * 2 / 8)))


# --------------------------------------------------------------------------------------------
# optimizers against torch.optim (foreach=False) + torch schedulers

SIZES = (1, 7, 4097)
N_STEPS = 50


def _groups(dtype, gen, lrs=(0.05, 0.02)):
    """Two groups: [size 1, size 4097] and [size 7]; returns (torch copies, ref copies)."""
    shapes = [(SIZES[0],), (SIZES[2],), (SIZES[1],)]
    data = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    mk = [torch.nn.Parameter(d.clone()) for d in data]
    mr = [torch.nn.Parameter(d.clone()) for d in data]

    def layout(ps):
        return [{"params": ps[:2], "lr": lrs[0]}, {"params": ps[2:], "lr": lrs[1]}]

    return mk, mr, layout


def _set_grads(pk, pr, gen, k, scale=1.0):
    for i, (a, b) in enumerate(zip(pk, pr, strict=True)):
        if (k + i) % 7 == 3:  # some params have no grad on some steps
            a.grad = b.grad = None
            continue
        g = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(a.dtype)
        a.grad = g.clone()
        b.grad = (g * scale).to(b.dtype)


def _assert_params(pk, pr, rel):
    # Relative to the largest |param| of the model, not of each tensor: a small tensor whose
    # values end near 0 after crossing it would turn rounding into a large per-tensor ratio.
    scale = max(a.detach().double().abs().max().item() for a in pk)
    for a, b in zip(pk, pr, strict=True):
        err = (a.detach().double() - b.detach().double()).abs().max().item()
        assert err <= rel * max(scale, 1e-30), (err, scale)


SCHEDULES = [
    ("none", None, None),
    ("step", lambda: spec("StepLR", step_size=4, gamma=0.7), lambda o: sch.StepLR(o, 4, 0.7)),
    (
        "cosine",
        lambda: spec("CosineAnnealingLR", T_max=9, eta_min=0.001),
        lambda o: sch.CosineAnnealingLR(o, 9, 0.001),
    ),
    (
        "linear",
        lambda: spec("LinearLR", start_factor=0.2, total_iters=11),
        lambda o: sch.LinearLR(o, 0.2, total_iters=11),
    ),
    (
        "onecycle",
        lambda: spec("OneCycleLR", max_lr=(0.08, 0.03), total_steps=N_STEPS),
        lambda o: sch.OneCycleLR(o, max_lr=[0.08, 0.03], total_steps=N_STEPS),
    ),
    (
        "cyclic",
        lambda: spec(
            "CyclicLR", base_lr=0.01, max_lr=(0.06, 0.1), step_size_up=5, step_size_down=3
        ),
        lambda o: sch.CyclicLR(o, 0.01, [0.06, 0.1], step_size_up=5, step_size_down=3),
    ),
]


def _run_vs_torch(torch_cls, ref_cls, kwargs, sched_index, steps_per_epoch=1):
    gen = torch.Generator().manual_seed(fresh_seed())
    pk, pr, layout = _groups(torch.float64, gen)
    name, make_spec, make_torch = SCHEDULES[sched_index % len(SCHEDULES)]
    topt = torch_cls(layout(pk), foreach=False, **kwargs)
    sched = make_torch(topt) if make_torch else None
    ropt = ref_cls(
        layout(pr),
        schedule=make_spec() if make_spec else None,
        steps_per_epoch=steps_per_epoch,
        **kwargs,
    )
    for k in range(N_STEPS):
        expect = [g["lr"] for g in topt.param_groups]
        got = ropt.get_last_lr()
        assert all(close(a, b) for a, b in zip(got, expect, strict=True)), (name, k, got, expect)
        _set_grads(pk, pr, gen, k)
        topt.step()
        ropt.step()
        if sched is not None and (k + 1) % steps_per_epoch == 0:
            sched.step()
        _assert_params(pk, pr, 1e-12)
    return topt, ropt


def _sgd_combos():
    out = []
    for wd in (0.0, 0.01):
        for maximize in (False, True):
            out.append(dict(momentum=0.0, weight_decay=wd, maximize=maximize))
            for dampening, nesterov in ((0.0, False), (0.0, True), (0.3, False)):
                out.append(
                    dict(
                        momentum=0.9,
                        dampening=dampening,
                        nesterov=nesterov,
                        weight_decay=wd,
                        maximize=maximize,
                    )
                )
    return out


@pytest.mark.parametrize("index,kwargs", list(enumerate(_sgd_combos())))
def test_sgd_matches_torch(index, kwargs):
    topt, ropt = _run_vs_torch(torch.optim.SGD, ref.SGD, kwargs, index)
    for pa, pb in zip(topt.param_groups[0]["params"], ropt.param_groups[0]["params"], strict=True):
        sa, sb = topt.state[pa], ropt.state[pb]
        assert ("momentum_buffer" in sa) == ("momentum_buffer" in sb)


def _adam_combos():
    out = []
    for amsgrad in (False, True):
        for wd in (0.0, 0.1):
            for maximize in (False, True):
                out.append(dict(amsgrad=amsgrad, weight_decay=wd, maximize=maximize))
    return out


@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
@pytest.mark.parametrize("index,kwargs", list(enumerate(_adam_combos())))
def test_adam_matches_torch(cls, index, kwargs):
    kwargs = dict(kwargs, betas=(0.8, 0.99), eps=1e-6)
    topt, ropt = _run_vs_torch(getattr(torch.optim, cls), getattr(ref, cls), kwargs, index + 1)
    for pa, pb in zip(topt.param_groups[1]["params"], ropt.param_groups[1]["params"], strict=True):
        sa, sb = topt.state[pa], ropt.state[pb]
        assert float(sa["step"]) == float(sb["step"])
        assert torch.allclose(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=1e-12, atol=0)


@pytest.mark.parametrize("cls", ["SGD", "Adam", "AdamW"])
def test_steps_per_epoch_and_defaults(cls):
    kwargs = {"SGD": dict(momentum=0.5), "Adam": {}, "AdamW": {}}[cls]
    _run_vs_torch(getattr(torch.optim, cls), getattr(ref, cls), kwargs, 2, steps_per_epoch=3)
    opt = getattr(ref, cls)([torch.nn.Parameter(torch.zeros(3))])
    assert opt.get_last_lr() == [1e-3]
    if cls == "AdamW":
        assert opt.param_groups[0]["weight_decay"] == 1e-2


def test_torch_scheduler_on_reference_optimizer():
    """schedule=None: group['lr'] is used as it stands, so a torch scheduler drives it."""
    gen = torch.Generator().manual_seed(fresh_seed())
    pk, pr, layout = _groups(torch.float64, gen)
    topt = torch.optim.Adam(layout(pk), foreach=False)
    ropt = ref.Adam(layout(pr))
    s1, s2 = sch.ExponentialLR(topt, 0.9), sch.ExponentialLR(ropt, 0.9)
    for k in range(20):
        _set_grads(pk, pr, gen, k)
        topt.step()
        ropt.step()
        s1.step()
        s2.step()
        _assert_params(pk, pr, 1e-12)
    assert ropt.get_last_lr() == [g["lr"] for g in ropt.param_groups]


def test_state_dict_round_trip():
    gen = torch.Generator().manual_seed(fresh_seed())
    pk, pr, layout = _groups(torch.float64, gen)

    def make(ps):
        return ref.AdamW(layout(ps), amsgrad=True, schedule=spec("StepLR", step_size=3, gamma=0.5))

    a = make(pk)
    b = make(pr)
    for k in range(25):
        _set_grads(pk, pr, gen, k)
        a.step()
        b.step()
        if k == 11:
            saved = b.state_dict()
            b = make(pr)
            assert b.get_last_lr() == [0.05, 0.02]
            b.load_state_dict(saved)
            assert b.get_last_lr() == a.get_last_lr()
        _assert_params(pk, pr, 0.0)
    assert a.schedule_step == b.schedule_step == 25


# --------------------------------------------------------------------------------------------
# AMP protocol: grad_scale / found_inf


INF_STEPS = {2, 3, 9, 17}


def test_found_inf_matches_fused_adam():
    gen = torch.Generator().manual_seed(fresh_seed())
    pk, pr, layout = _groups(torch.float64, gen)
    topt = torch.optim.Adam(layout(pk), fused=True, weight_decay=0.01, amsgrad=True)
    sched = sch.CosineAnnealingLR(topt, 8, 0.001)
    ropt = ref.Adam(
        layout(pr),
        weight_decay=0.01,
        amsgrad=True,
        schedule=spec("CosineAnnealingLR", T_max=8, eta_min=0.001),
    )
    assert ref.Adam._step_supports_amp_scaling
    scale = 1024.0
    for k in range(30):
        _set_grads(pk, pr, gen, k)
        for a, b in zip(pk, pr, strict=True):
            if a.grad is not None:
                a.grad.mul_(scale)
                b.grad = a.grad.clone()
        inf = torch.tensor(1.0 if k in INF_STEPS else 0.0)
        for opt in (topt, ropt):
            opt.grad_scale = torch.tensor(scale)
            opt.found_inf = inf.clone()
            opt.step()
            del opt.grad_scale, opt.found_inf
        sched.step()
        _assert_params(pk, pr, 1e-12)
        for a, b in zip(pk, pr, strict=True):
            if topt.state[a]:
                assert float(topt.state[a]["step"]) == float(ropt.state[b]["step"])


@pytest.mark.parametrize("skip_schedule", [False, True])
@pytest.mark.parametrize("cls", ["SGD", "AdamW"])
def test_found_inf_skips_update(cls, skip_schedule):
    """found_inf steps leave params/state alone; equivalent to torch never stepping then."""
    gen = torch.Generator().manual_seed(fresh_seed())
    pk, pr, layout = _groups(torch.float64, gen)
    kwargs = dict(momentum=0.9, dampening=0.1) if cls == "SGD" else dict(weight_decay=0.05)
    topt = getattr(torch.optim, cls)(layout(pk), foreach=False, **kwargs)
    sched = sch.StepLR(topt, 2, 0.8)
    ropt = getattr(ref, cls)(
        layout(pr),
        schedule=spec("StepLR", step_size=2, gamma=0.8),
        skip_schedule_on_inf=skip_schedule,
        **kwargs,
    )
    for k in range(25):
        inf = k in INF_STEPS or k == 0  # an overflow on the very first step too
        _set_grads(pk, pr, gen, k, scale=8.0)
        ropt.grad_scale, ropt.found_inf = torch.tensor(8.0), torch.tensor(float(inf))
        ropt.step()
        del ropt.grad_scale, ropt.found_inf
        if not inf:
            topt.step()
        if not (inf and skip_schedule):
            sched.step()
        _assert_params(pk, pr, 1e-12)
        assert all(
            close(a, b) for a, b in zip(ropt.get_last_lr(), sched.get_last_lr(), strict=True)
        )


def test_grad_scaler_drives_reference_optimizer():
    """torch.amp.GradScaler sets grad_scale/found_inf on the optimizer and clears them after."""
    torch.manual_seed(fresh_seed() % 2**31)
    model = torch.nn.Linear(5, 3).double()
    opt = ref.AdamW(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    twin = torch.nn.Linear(5, 3).double()
    twin.load_state_dict(model.state_dict())
    ropt = torch.optim.AdamW(twin.parameters(), lr=0.01, foreach=False)
    x = torch.randn(9, 5, dtype=torch.float64)
    for _ in range(5):
        opt.zero_grad()
        scaler.scale(model(x).square().sum()).backward()
        scaler.step(opt)
        scaler.update()
        assert not hasattr(opt, "found_inf")
        ropt.zero_grad()
        twin(x).square().sum().backward()
        ropt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# precision policy


@pytest.mark.parametrize("cls", ["SGD", "Adam", "AdamW"])
def test_float32_close_to_torch(cls):
    gen = torch.Generator().manual_seed(fresh_seed())
    pk, pr, layout = _groups(torch.float32, gen)
    kwargs = dict(momentum=0.9, nesterov=True) if cls == "SGD" else dict(amsgrad=True)
    topt = getattr(torch.optim, cls)(layout(pk), foreach=False, **kwargs)
    ropt = getattr(ref, cls)(layout(pr), **kwargs)
    for k in range(N_STEPS):
        _set_grads(pk, pr, gen, k)
        topt.step()
        ropt.step()
    _assert_params(pk, pr, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", ["SGD", "AdamW"])
def test_low_precision_uses_float32_math_and_state(cls, dtype):
    gen = torch.Generator().manual_seed(fresh_seed())
    p = torch.nn.Parameter(torch.randn(33, generator=gen).to(dtype))
    kwargs = dict(momentum=0.9) if cls == "SGD" else {}
    opt = getattr(ref, cls)([p], lr=0.01, **kwargs)
    exp_avg = torch.zeros(33)
    exp_avg_sq = torch.zeros(33)
    buf = None
    for n in range(1, 6):
        g = torch.randn(33, generator=gen).to(dtype)
        p.grad = g
        x = p.detach().float().clone()  # float32 math from the rounded param
        opt.step()
        gf = g.float()
        if cls == "SGD":
            buf = gf.clone() if buf is None else buf * 0.9 + gf
            x = x - 0.01 * buf
        else:
            x = x * (1 - 0.01 * 0.01)
            exp_avg = exp_avg * 0.9 + gf * 0.1
            exp_avg_sq = exp_avg_sq * 0.999 + gf * gf * 0.001
            den = (exp_avg_sq.sqrt() / math.sqrt(1 - 0.999**n)) + 1e-8
            x = x - 0.01 / (1 - 0.9**n) * exp_avg / den
        ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
        assert torch.allclose(p.detach().float(), x.to(dtype).float(), rtol=ulp, atol=1e-6)
    state = opt.state[p]
    for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
        if key in state:
            assert state[key].dtype == torch.float32
    assert p.dtype == dtype
