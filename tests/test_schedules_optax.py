"""optax-named schedules and parameters against optax itself (jax on the CPU, float64), and the
warmup from 0 against optax's join of a linear warmup and against timm's warmup; fresh random
arguments every run (the seed is printed on failure).

Needs the ``peers`` extra (``pip install '.[peers]'``: optax and jax); skipped without it.
"""

from __future__ import annotations

import random

import pytest

from fusedlr import schedules as fs

optax = pytest.importorskip("optax", reason="optax is not installed (pip install '.[peers]')")
jax = pytest.importorskip("jax", reason="jax is not installed (pip install '.[peers]')")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

REL = 1e-12


def _rng():
    seed = random.SystemRandom().randrange(2**32)
    print(f"seed {seed}")
    return random.Random(seed)


def optax_values(fn, n):
    return [float(fn(jnp.asarray(t, dtype=jnp.int64))) for t in range(n)]


def assert_close_lists(got, want, rel=REL, abs_=1e-300, what=""):
    for t, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a == pytest.approx(b, rel=rel, abs=abs_), (what, t, a, b)


def test_exponential_decay_transition_begin_and_end_value():
    rng = _rng()
    for _ in range(12):
        base = rng.uniform(1e-3, 1.0)
        steps, rate = rng.randrange(1, 30), rng.choice([rng.uniform(0.05, 0.99),
                                                        rng.uniform(1.01, 2.0)])
        begin, stair = rng.randrange(0, 40), rng.random() < 0.5
        end = rng.choice([None, base * rng.uniform(0.0, 3.0)])
        spec = fs.ExponentialDecay(steps, rate, stair, transition_begin=begin, end_value=end)
        want = optax_values(optax.exponential_decay(base, steps, rate, begin, stair, end), 150)
        assert_close_lists(spec.values(150, base).tolist(), want, what=spec)


def test_cosine_decay_exponent():
    rng = _rng()
    for _ in range(8):
        base, d = rng.uniform(1e-3, 1.0), rng.randrange(1, 90)
        alpha, e = rng.uniform(0.0, 1.0), rng.uniform(0.1, 4.0)
        spec = fs.CosineDecay(d, alpha, exponent=e)
        want = optax_values(optax.cosine_decay_schedule(base, d, alpha, e), d + 30)
        # Keras' pi * (s / D) against optax's pi * s / D: a few ulp apart
        assert_close_lists(spec.values(d + 30, base).tolist(), want, rel=1e-12, abs_=1e-15,
                           what=spec)


def test_warmup_cosine_exponent():
    rng = _rng()
    for _ in range(8):
        base, w = rng.uniform(1e-3, 1.0), rng.randrange(0, 20)
        n, end, e = w + rng.randrange(1, 90), rng.uniform(0.0, 1.0), rng.uniform(0.1, 4.0)
        spec = fs.WarmupCosine(w, n, end, exponent=e)
        fn = optax.warmup_cosine_decay_schedule(0.0, base, w, n, end * base, e)
        assert_close_lists(spec.values(n + 20, base).tolist(), optax_values(fn, n + 20),
                           rel=1e-12, abs_=1e-15, what=spec)


def _random_scales(rng, hi=150):
    return {rng.randrange(0, hi): rng.choice([0.0, rng.uniform(0.0, 3.0)])
            for _ in range(rng.randrange(0, 7))}


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_piecewise_interpolate(kind):
    rng = _rng()
    for _ in range(10):
        base, scales = rng.uniform(1e-3, 1.0), _random_scales(rng)
        absolute = rng.random() < 0.3
        spec = fs.PiecewiseInterpolate(kind, scales, init_value=0.7 if absolute else None)
        fn = optax.piecewise_interpolate_schedule(kind, 0.7 if absolute else base, scales)
        assert_close_lists(spec.values(180, base).tolist(), optax_values(fn, 180), what=spec)


def test_linear_one_cycle_any_pct_final():
    rng = _rng()
    cases = [(0.3, 0.85), (0.5, 0.5), (0.9, 0.2), (0.0, 1.0), (1.0, 0.0)]
    cases += [(rng.uniform(0, 1), rng.uniform(0, 1)) for _ in range(8)]
    for ps, pf in cases:
        steps, peak = rng.randrange(1, 200), rng.uniform(1e-3, 1.0)
        div, final = rng.uniform(1.0, 50.0), rng.uniform(1.0, 1e4)
        spec = fs.LinearOneCycle(steps, peak, ps, pf, div, final)
        fn = optax.linear_onecycle_schedule(steps, peak, ps, pf, div, final)
        # absolute: the group's lr (here 5.0) is ignored
        assert_close_lists(spec.values(steps + 20, 5.0).tolist(), optax_values(fn, steps + 20),
                           what=spec)


def _child(rng, base):
    """A random fusedlr child and the optax schedule it stands for, both from ``base``."""
    k = rng.randrange(4)
    if k == 0:
        d, a = rng.randrange(1, 40), rng.uniform(0, 1)
        return fs.CosineDecay(d, a), optax.cosine_decay_schedule(base, d, a)
    if k == 1:
        s, r, b = rng.randrange(1, 9), rng.uniform(0.5, 1.0), rng.randrange(0, 10)
        return (fs.ExponentialDecay(s, r, transition_begin=b),
                optax.exponential_decay(base, s, r, b))
    if k == 2:
        sc = _random_scales(rng, 40)
        return (fs.PiecewiseInterpolate("cosine", sc),
                optax.piecewise_interpolate_schedule("cosine", base, sc))
    return fs.RelativeWarmup(None, 0), optax.constant_schedule(base)


def test_join_schedules_boundary_semantics():
    """optax's where-chain: boundaries 0, repeated and unsorted, each schedule from its own
    boundary."""
    rng = _rng()
    for _ in range(15):
        base = rng.uniform(1e-3, 1.0)
        pairs = [_child(rng, base) for _ in range(rng.randrange(1, 5))]
        bounds = [rng.choice([0, rng.randrange(0, 60)]) for _ in pairs[1:]]
        spec = fs.JoinSchedules([p[0] for p in pairs], bounds)
        fn = optax.join_schedules([p[1] for p in pairs], bounds)
        assert_close_lists(spec.values(100, base).tolist(), optax_values(fn, 100), rel=1e-12,
                           abs_=1e-15, what=spec)


def test_relative_warmup_as_optax_join_of_a_linear_warmup():
    rng = _rng()
    for _ in range(10):
        base, w = rng.uniform(1e-3, 1.0), rng.randrange(0, 30)
        child, fn = _child(rng, base)
        spec = fs.RelativeWarmup(child, w)
        joined = optax.join_schedules([optax.linear_schedule(0.0, base, w), fn], [w])
        # optax ramps as (0 - peak) (1 - t / W) + peak, HF as peak * (t / W): ulps apart
        assert_close_lists(spec.values(120, base).tolist(), optax_values(joined, 120),
                           rel=1e-12, abs_=1e-15, what=spec)
    const = optax.warmup_constant_schedule(0.0, 0.3, 17)
    assert_close_lists(fs.RelativeWarmup(None, 17).values(40, 0.3).tolist(),
                       optax_values(const, 40), rel=1e-12, abs_=1e-15)


@pytest.mark.parametrize("prefix", [True, False])
def test_relative_warmup_as_timm(prefix):
    """timm's CosineLRScheduler(warmup_lr_init=0): prefix = its warmup_prefix."""
    torch = pytest.importorskip("torch")
    timm_cosine = pytest.importorskip(
        "timm.scheduler.cosine_lr", reason="timm is not installed (pip install '.[integrations]')")
    rng = _rng()
    for _ in range(6):
        w, t_initial = rng.randrange(1, 25), rng.randrange(2, 80)
        lrs = [rng.uniform(1e-3, 1.0) for _ in range(3)]
        opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr}
                               for lr in lrs])
        sched = timm_cosine.CosineLRScheduler(opt, t_initial=t_initial, warmup_t=w,
                                              warmup_lr_init=0.0, warmup_prefix=prefix)
        spec = fs.RelativeWarmup(fs.CosineDecay(t_initial), w, prefix=prefix)
        n = w + t_initial + 10
        for g, lr in enumerate(lrs):
            want = [sched._get_lr(t)[g] for t in range(n)]
            assert_close_lists(spec.values(n, lr).tolist(), want, rel=1e-12, abs_=1e-15,
                               what=spec)
