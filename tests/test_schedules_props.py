"""Property tests (hypothesis): for random valid arguments the device evaluation equals
``fusedlr.reference``; random invalid arguments raise ValueError / TypeError naming the
argument; every spec round-trips through ``to_dict`` / ``from_dict``."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fusedlr import reference
from fusedlr import schedules as fs
from fusedlr.schedules import from_dict

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

steps = st.integers(1, 60)
small = st.integers(0, 40)
rate = st.floats(0.0, 2.0)
unit = st.floats(0.0, 1.0)
pos_rate = st.floats(0.01, 2.0)
lr = st.floats(0.0, 3.0)
modes = st.sampled_from(["linear", "cosine", "1-sqrt"])


def _cyclic(draw):
    return fs.CyclicLR(
        draw(st.one_of(lr, st.lists(lr, min_size=3, max_size=3))),
        draw(st.one_of(lr, st.lists(lr, min_size=3, max_size=3))),
        draw(steps), draw(st.one_of(st.none(), small)),
        draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
        draw(st.floats(0.9, 1.0)), None, draw(st.sampled_from(["cycle", "iterations"])),
        draw(st.booleans()), draw(unit), draw(unit),
    )


def _one_cycle(draw):
    kw = dict(pct_start=draw(st.floats(0.01, 0.99)),
              anneal_strategy=draw(st.sampled_from(["cos", "linear"])),
              cycle_momentum=draw(st.booleans()), base_momentum=draw(unit),
              max_momentum=draw(unit), div_factor=draw(st.floats(1.0, 100.0)),
              final_div_factor=draw(st.floats(1.0, 1e4)), three_phase=draw(st.booleans()))
    if draw(st.booleans()):
        kw["total_steps"] = draw(st.integers(1, 150))
    else:
        kw["epochs"], kw["steps_per_epoch"] = draw(st.integers(1, 10)), draw(st.integers(1, 15))
    try:
        return fs.OneCycleLR(draw(st.one_of(lr, st.lists(lr, min_size=3, max_size=3))), **kw)
    except ValueError:  # an empty phase (pct_start * total_steps == 1, ...): rejected by design
        assume(False)


def _piecewise(draw):
    bs = sorted(draw(st.sets(st.integers(0, 200), max_size=8)))
    vs = draw(st.lists(lr, min_size=len(bs) + 1, max_size=len(bs) + 1))
    return fs.PiecewiseConstant(bs, vs)


SIMPLE = st.sampled_from([
    fs.CosineDecay(30, 0.1), fs.ExponentialLR(0.95), fs.StepLR(7),
    fs.CyclicLR(0.01, 0.1, 4, base_momentum=0.7), fs.InverseSqrt(5),
    fs.ChainedScheduler([fs.ConstantLR(0.5, 3), fs.CosineAnnealingWarmRestarts(5, 2)]),
    fs.OneCycleLR([0.5, 1.0, 2.0], 40, three_phase=True),
])


@st.composite
def valid_specs(draw):
    kind = draw(st.sampled_from(sorted(BUILDERS)))
    return BUILDERS[kind](draw)


BUILDERS = {
    "CosineAnnealingWarmRestarts": lambda d: fs.CosineAnnealingWarmRestarts(
        d(steps), d(st.integers(1, 4)), d(unit)),
    "CyclicLR": _cyclic,
    "OneCycleLR": _one_cycle,
    "ExponentialDecay": lambda d: fs.ExponentialDecay(d(steps), d(pos_rate), d(st.booleans())),
    "NaturalExpDecay": lambda d: fs.NaturalExpDecay(d(steps), d(rate), d(st.booleans())),
    "InverseTimeDecay": lambda d: fs.InverseTimeDecay(d(steps), d(rate), d(st.booleans())),
    "PolynomialDecay": lambda d: fs.PolynomialDecay(d(steps), d(unit), d(st.floats(0, 4)),
                                                    d(st.booleans())),
    "CosineDecay": lambda d: fs.CosineDecay(d(steps), d(unit)),
    "CosineDecayRestarts": lambda d: fs.CosineDecayRestarts(
        d(steps), d(st.one_of(st.just(1.0), st.floats(1.0, 4.0))), d(st.floats(0, 1.5)), d(unit)),
    "LinearCosineDecay": lambda d: fs.LinearCosineDecay(d(steps), d(st.floats(0, 4)), d(unit),
                                                        d(st.floats(0, 0.1))),
    "NoisyLinearCosineDecay": lambda d: fs.NoisyLinearCosineDecay(
        d(steps), d(st.floats(0, 2)), d(st.floats(0, 2)), d(st.floats(0, 4)), d(unit),
        d(st.floats(0, 0.1)), d(st.integers(-(2**80), 2**80))),
    "PiecewiseConstant": _piecewise,
    "LinearWarmup": lambda d: fs.LinearWarmup(
        d(st.one_of(lr, SIMPLE)), d(steps), d(lr), d(lr)),
    "WarmupStableDecay": lambda d: fs.WarmupStableDecay(d(small), d(small), d(small), d(unit),
                                                        d(modes), d(modes)),
    "InverseSqrt": lambda d: fs.InverseSqrt(d(small), d(st.one_of(st.none(), steps))),
    "WarmupCosine": lambda d: (lambda w: fs.WarmupCosine(w, w + d(steps), d(st.floats(0, 1.5)),
                                                         d(st.floats(0.1, 4.0))))(d(small)),
    "ExponentialDecayOptax": lambda d: fs.ExponentialDecay(
        d(steps), d(st.floats(0.05, 3.0)), d(st.booleans()), d(small), d(st.one_of(st.none(), lr))),
    "CosineDecayExponent": lambda d: fs.CosineDecay(d(steps), d(unit), d(st.floats(0.1, 4.0))),
    "WarmupStableDecayCycles": lambda d: fs.WarmupStableDecay(
        d(small), d(small), d(small), d(unit), d(modes), "cosine", d(st.floats(0.0, 3.0))),
    "MultiStepLRUnsorted": lambda d: fs.MultiStepLR(d(st.lists(small, max_size=6)),
                                                    d(st.floats(0.1, 1.0))),
    "SWALR": lambda d: fs.SWALR(d(st.one_of(lr, st.lists(lr, min_size=3, max_size=3))),
                                d(st.integers(0, 40)), d(st.sampled_from(["cos", "linear"]))),
    "RelativeWarmup": lambda d: fs.RelativeWarmup(d(st.one_of(st.none(), SIMPLE)), d(small),
                                                  d(st.booleans())),
    "JoinSchedules": lambda d: (lambda kids: fs.JoinSchedules(
        kids, d(st.lists(st.integers(0, 60), min_size=len(kids) - 1, max_size=len(kids) - 1))))(
        d(st.lists(SIMPLE, min_size=1, max_size=4))),
    "PiecewiseInterpolate": lambda d: fs.PiecewiseInterpolate(
        d(st.sampled_from(["linear", "cosine"])),
        d(st.dictionaries(st.integers(0, 120), st.floats(0.0, 3.0), max_size=6)),
        d(st.one_of(st.none(), lr))),
    "LinearOneCycle": lambda d: fs.LinearOneCycle(
        d(st.integers(1, 140)), d(st.one_of(lr, st.lists(lr, min_size=3, max_size=3))),
        d(unit), d(unit), d(st.floats(0.5, 100.0)), d(st.floats(0.5, 1e4))),
    "LinearWithWarmup": lambda d: fs.LinearWithWarmup(d(small), d(st.integers(0, 120))),
    "CosineWithWarmup": lambda d: fs.CosineWithWarmup(d(small), d(st.integers(0, 120)),
                                                      d(st.floats(0.0, 3.0)), d(unit)),
    "CosineWithHardRestarts": lambda d: fs.CosineWithHardRestarts(
        d(small), d(st.integers(0, 120)), d(st.floats(0.0, 5.0))),
    "PolynomialWithWarmup": lambda d: _polynomial_with_warmup(d),
    "CosineWarmupWithMinLR": lambda d: fs.CosineWarmupWithMinLR(
        d(small), d(st.integers(0, 120)), d(st.floats(0.0, 3.0)), d(unit),
        d(st.one_of(st.none(), unit))),
}


def _polynomial_with_warmup(draw):
    w, n = draw(small), draw(st.integers(0, 120))
    assume(n != w)
    lr_init = draw(st.floats(1e-3, 2.0))
    return fs.PolynomialWithWarmup(w, n, lr_init, draw(st.floats(0.0, 0.999)) * lr_init,
                                   draw(st.floats(0.0, 4.0)))


def _horizon(spec) -> int:
    """Steps to compare: OneCycleLR's reference raises past total_steps (torch does)."""
    if isinstance(spec, fs.OneCycleLR):
        return spec._n + 1
    if isinstance(spec, fs.LinearWarmup) and isinstance(spec.schedule, fs.OneCycleLR):
        return spec.warmup_steps + spec.schedule._n + 1
    # a composite shifts its children's time back (never forward): below the shortest
    # OneCycleLR horizon inside, every child is within its own
    return min([_horizon(c) for c in spec.children()] + [150])


def _groups(spec) -> int:
    lists = [v for v in spec.args().values() if isinstance(v, tuple) and len(v) == 3]
    per_group = (fs.CyclicLR, fs.OneCycleLR, fs.SWALR, fs.LinearOneCycle)
    return 3 if lists and isinstance(spec, per_group) else 1


@SETTINGS
@given(spec=valid_specs(), base_lr=st.floats(0.0, 2.0))
def test_device_equals_reference(spec, base_lr):
    n = _horizon(spec)
    for group in range(_groups(spec)):
        got = spec.values(n, base_lr, group=group).tolist()
        moms = spec.momentum_values(n, group=group).tolist()
        for t in range(n):
            want = reference.schedule_lr(spec, t, base_lr, group)
            assert got[t] == pytest.approx(want, rel=1e-12, abs=1e-15), (t, got[t], want)
            m = reference.schedule_momentum(spec, t, group)
            if m is None:
                assert math.isnan(moms[t])
            else:
                assert moms[t] == pytest.approx(m, rel=1e-12, abs=1e-15), (t, moms[t], m)


@SETTINGS
@given(spec=valid_specs())
def test_to_dict_round_trip(spec):
    d = spec.to_dict()
    back = from_dict(pickle.loads(pickle.dumps(d)))
    assert type(back) is type(spec)
    assert back == spec
    n = min(_horizon(spec), 80)
    assert back.values(n, 0.7).tolist() == spec.values(n, 0.7).tolist()
    assert back.cycles_momentum() == spec.cycles_momentum()


@SETTINGS
@given(mode=st.sampled_from(["cycle", "iterations"]), up=steps, total=st.integers(1, 200),
       k=st.floats(0.5, 1.0))
def test_cyclic_custom_scale_fn_equals_reference_and_round_trips(mode, up, total, k):
    def scale(x):
        return k**x

    spec = fs.CyclicLR(0.01, 0.2, up, scale_fn=scale, scale_mode=mode, total_steps=total)
    got = spec.values(total).tolist()
    moms = spec.momentum_values(total).tolist()
    # the reference calls the function itself (torch's behaviour for t < total_steps)
    ref = type("CyclicLR", (), dict(vars(spec), scale_fn=staticmethod(scale)))()
    for t in range(total):
        assert got[t] == pytest.approx(reference.schedule_lr(ref, t, 1.0), rel=1e-12)
        assert moms[t] == pytest.approx(reference.schedule_momentum(ref, t), rel=1e-12)
    back = from_dict(spec.to_dict())
    assert back == spec and back.values(total).tolist() == got


# -- invalid arguments --------------------------------------------------------------------------

NEG_INT = st.integers(-100, 0)
NEG_FLOAT = st.floats(-10.0, -1e-6)
NOT_NUMBER = st.sampled_from(["1", None, True])

# (class, valid kwargs, {argument: strategy of invalid values})
INVALID = [
    (fs.CosineAnnealingWarmRestarts, dict(T_0=5),
     {"T_0": NEG_INT, "T_mult": NEG_INT, "eta_min": NEG_FLOAT}),
    (fs.CyclicLR, dict(base_lr=0.1, max_lr=1.0),
     {"base_lr": NEG_FLOAT, "max_lr": NEG_FLOAT, "step_size_up": NEG_INT,
      "step_size_down": st.integers(-100, -1), "mode": st.sampled_from(["tri", "", "cos"]),
      "gamma": st.floats(-5, 0), "scale_mode": st.sampled_from(["epoch", "Cycle"]),
      "cycle_momentum": st.sampled_from([1, "yes", None]), "base_momentum": NEG_FLOAT,
      "max_momentum": NEG_FLOAT, "scale_fn": st.sampled_from([3, "f"])}),
    (fs.OneCycleLR, dict(max_lr=1.0, total_steps=100),
     {"max_lr": NEG_FLOAT, "total_steps": NEG_INT,
      "pct_start": st.one_of(st.floats(-1, 0), st.floats(1, 2)),
      "anneal_strategy": st.sampled_from(["cosine", "lin"]), "div_factor": st.floats(-5, 0),
      "final_div_factor": st.floats(-5, 0), "three_phase": st.sampled_from([0, "no"]),
      "base_momentum": NEG_FLOAT}),
    (fs.ExponentialDecay, dict(decay_steps=10, decay_rate=0.5),
     {"decay_steps": NEG_INT, "decay_rate": st.floats(-5, 0), "staircase": st.just(1),
      "transition_begin": st.integers(-100, -1), "end_value": NEG_FLOAT}),
    (fs.NaturalExpDecay, dict(decay_steps=10, decay_rate=0.5),
     {"decay_steps": NEG_INT, "decay_rate": NEG_FLOAT}),
    (fs.InverseTimeDecay, dict(decay_steps=10, decay_rate=0.5),
     {"decay_steps": NEG_INT, "decay_rate": NEG_FLOAT}),
    (fs.PolynomialDecay, dict(decay_steps=10),
     {"decay_steps": NEG_INT, "end_learning_rate": NEG_FLOAT, "power": NEG_FLOAT,
      "cycle": st.just("yes")}),
    (fs.CosineDecay, dict(decay_steps=10),
     {"decay_steps": NEG_INT, "alpha": st.one_of(NEG_FLOAT, st.floats(1.01, 5)),
      "exponent": st.floats(-5, 0)}),
    (fs.CosineDecayRestarts, dict(first_decay_steps=10),
     {"first_decay_steps": NEG_INT, "t_mul": st.floats(-1, 0.99), "m_mul": NEG_FLOAT,
      "alpha": NEG_FLOAT}),
    (fs.LinearCosineDecay, dict(decay_steps=10),
     {"decay_steps": NEG_INT, "num_periods": NEG_FLOAT, "alpha": NEG_FLOAT, "beta": NEG_FLOAT}),
    (fs.NoisyLinearCosineDecay, dict(decay_steps=10),
     {"decay_steps": NEG_INT, "initial_variance": NEG_FLOAT, "variance_decay": NEG_FLOAT,
      "seed": st.sampled_from([1.5, "0", None])}),
    (fs.PiecewiseConstant, dict(boundaries=[5, 10], values=[1.0, 0.5, 0.1]),
     {"boundaries": st.sampled_from([[10, 5], [5, 5], [-1, 3], [2, "x"]]),
      "values": st.sampled_from([[1.0, 0.5], [1.0, 0.5, 0.1, 0.01], [1.0, -0.5, 0.1]])}),
    (fs.LinearWarmup, dict(schedule=fs.CosineDecay(10), warmup_steps=5, start_lr=0.0, end_lr=0.1),
     {"schedule": st.sampled_from(["cos", None, -0.1, lambda t: 1.0]), "warmup_steps": NEG_INT,
      "start_lr": NEG_FLOAT, "end_lr": NEG_FLOAT}),
    (fs.WarmupStableDecay, dict(warmup_steps=5, stable_steps=5, decay_steps=5),
     {"warmup_steps": st.integers(-100, -1), "stable_steps": st.integers(-100, -1),
      "decay_steps": st.integers(-100, -1),
      "min_lr_ratio": st.one_of(NEG_FLOAT, st.floats(1.01, 3)),
      "warmup_type": st.sampled_from(["exp", "sqrt"]), "decay_type": st.just("step"),
      "num_cycles": NEG_FLOAT}),
    (fs.InverseSqrt, dict(warmup_steps=5),
     {"warmup_steps": st.integers(-100, -1), "timescale": NEG_INT}),
    (fs.WarmupCosine, dict(warmup_steps=5, total_steps=50),
     {"warmup_steps": st.integers(-100, -1), "total_steps": st.integers(-10, 5),
      "end_factor": NEG_FLOAT, "exponent": st.floats(-5, 0)}),
    (fs.SWALR, dict(swa_lr=0.05),
     {"swa_lr": NEG_FLOAT, "anneal_epochs": st.integers(-100, -1),
      "anneal_strategy": st.sampled_from(["cosine", "lin", ""])}),
    (fs.RelativeWarmup, dict(schedule=fs.StepLR(3), warmup_steps=5),
     {"schedule": st.sampled_from(["cos", 0.5, lambda t: 1.0]),
      "warmup_steps": st.integers(-100, -1)}),
    (fs.JoinSchedules, dict(schedules=[fs.StepLR(3), fs.StepLR(5)], boundaries=[4]),
     {"schedules": st.sampled_from([[], [fs.StepLR(3), None], "x"]),
      "boundaries": st.sampled_from([[-1], [], [1, 2], ["3"]])}),
    (fs.PiecewiseInterpolate, dict(interpolate_type="linear", boundaries_and_scales={3: 0.5}),
     {"interpolate_type": st.sampled_from(["lin", "cos", ""]),
      "boundaries_and_scales": st.sampled_from([{-3: 0.5}, {3: -0.5}, [(3, 0.5, 1)], 7]),
      "init_value": NEG_FLOAT}),
    (fs.LinearOneCycle, dict(transition_steps=50, peak_value=0.1),
     {"transition_steps": NEG_INT, "peak_value": NEG_FLOAT,
      "pct_start": st.one_of(NEG_FLOAT, st.floats(1.01, 3)),
      "pct_final": st.one_of(NEG_FLOAT, st.floats(1.01, 3)),
      "div_factor": st.floats(-5, 0), "final_div_factor": st.floats(-5, 0)}),
    (fs.LinearWithWarmup, dict(warmup_steps=5, total_steps=50),
     {"warmup_steps": st.integers(-100, -1), "total_steps": st.integers(-100, -1)}),
    (fs.CosineWithWarmup, dict(warmup_steps=5, total_steps=50),
     {"warmup_steps": st.integers(-100, -1), "total_steps": st.integers(-100, -1),
      "num_cycles": NEG_FLOAT, "min_lr_rate": st.one_of(NEG_FLOAT, st.floats(1.01, 3))}),
    (fs.CosineWithHardRestarts, dict(warmup_steps=5, total_steps=50),
     {"warmup_steps": st.integers(-100, -1), "num_cycles": NEG_FLOAT}),
    (fs.PolynomialWithWarmup, dict(warmup_steps=5, total_steps=50, lr_init=0.1),
     {"total_steps": st.sampled_from([5, -1]), "lr_init": st.floats(-1, 0),
      "lr_end": st.one_of(NEG_FLOAT, st.floats(0.1, 5)), "power": NEG_FLOAT}),
    (fs.CosineWarmupWithMinLR, dict(warmup_steps=5, total_steps=50),
     {"warmup_steps": st.integers(-100, -1), "num_cycles": NEG_FLOAT,
      "min_lr_rate": st.floats(1.01, 3), "warmup_lr_rate": st.one_of(NEG_FLOAT,
                                                                      st.floats(1.01, 3))}),
]


@st.composite
def invalid_calls(draw):
    cls, kwargs, bad = draw(st.sampled_from(INVALID))
    name = draw(st.sampled_from(sorted(bad)))
    value = draw(st.one_of(bad[name], NOT_NUMBER)) if name not in (
        "scale_fn", "schedule", "schedules", "boundaries", "values",
        "boundaries_and_scales") else draw(bad[name])
    return cls, {**kwargs, name: value}, name


@settings(max_examples=150, deadline=None)
@given(call=invalid_calls())
def test_invalid_arguments_raise_naming_the_argument(call):
    cls, kwargs, name = call
    value = kwargs[name]
    if name == "step_size_down" and value is None:
        return  # None is valid there (step_size_down = step_size_up)
    if name in ("timescale", "end_value", "init_value", "warmup_lr_rate") and value is None:
        return  # None is valid there (the default)
    if name == "cycle_momentum" and isinstance(value, bool):
        return
    if name in ("staircase", "cycle", "three_phase") and isinstance(value, bool):
        return
    with pytest.raises((ValueError, TypeError)) as err:
        cls(**kwargs)
    msg = str(err.value)
    assert cls.__name__ in msg
    arg = "total_steps" if name == "total_steps" else name
    assert arg in msg or (name == "values" and "values" in msg), msg


def test_known_invalid_cases_have_clear_messages():
    with pytest.raises(ValueError, match="T_0 must be >= 1"):
        fs.CosineAnnealingWarmRestarts(0)
    with pytest.raises(ValueError, match="step_size_up must be >= 1"):
        fs.CyclicLR(0.1, 1.0, step_size_up=0)
    with pytest.raises(ValueError, match="total_steps is required with a custom scale_fn"):
        fs.CyclicLR(0.1, 1.0, scale_fn=lambda x: 1.0)
    with pytest.raises(ValueError, match="pct_start must be < 1"):
        fs.OneCycleLR(1.0, 100, pct_start=1.0)
    with pytest.raises(ValueError, match="pct_start must be > 0"):
        fs.OneCycleLR(1.0, 100, pct_start=0.0)
    with pytest.raises(ValueError, match="first phase empty"):
        fs.OneCycleLR(1.0, 10, pct_start=0.1)
    with pytest.raises(ValueError, match="total_steps is required, or both epochs"):
        fs.OneCycleLR(1.0, epochs=3)
    with pytest.raises(ValueError, match="boundaries must be strictly increasing"):
        fs.PiecewiseConstant([3, 2], [1, 2, 3])
    with pytest.raises(ValueError, match=r"values needs len\(boundaries\) \+ 1 = 3"):
        fs.PiecewiseConstant([2, 3], [1, 2])
    with pytest.raises(ValueError, match="decay_rate must be >= 0"):
        fs.NaturalExpDecay(10, -0.1)
    with pytest.raises(ValueError, match="must exceed warmup_steps"):
        fs.WarmupCosine(10, 10)
    with pytest.raises(ValueError, match="base_lr has 2 values but param group 2"):
        fs.CyclicLR([0.1, 0.2], 1.0).values(3, group=2)
