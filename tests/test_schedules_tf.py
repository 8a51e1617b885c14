"""TF/Keras, Paddle, HF and optax-named schedules: against the independent formulas in
``fusedlr.reference`` over many steps, and against values worked by hand from each framework's
published formula (the arithmetic is written out in each test)."""

from __future__ import annotations

import math

import pytest
import torch

import fusedlr
from fusedlr import reference
from fusedlr import schedules as fs

REL = 1e-12

CASES = [
    fs.ExponentialDecay(10, 0.5),
    fs.ExponentialDecay(7, 0.9, staircase=True),
    fs.NaturalExpDecay(10, 0.3),
    fs.NaturalExpDecay(4, 0.7, staircase=True),
    fs.InverseTimeDecay(10, 0.5),
    fs.InverseTimeDecay(3, 2.0, staircase=True),
    fs.PolynomialDecay(50, 0.001, 2.0),
    fs.PolynomialDecay(30, 0.0, 0.5, cycle=True),
    fs.PolynomialDecay(17, 0.01, 1.0, cycle=True),
    fs.CosineDecay(100, 0.1),
    fs.CosineDecay(1),
    fs.CosineDecayRestarts(10, 2.0, 0.5, 0.05),
    fs.CosineDecayRestarts(7, 1.0, 0.9),
    fs.CosineDecayRestarts(5, 1.5, 1.0, 0.0),
    fs.CosineDecayRestarts(3, 3.0, 0.7, 0.2),
    fs.LinearCosineDecay(100),
    fs.LinearCosineDecay(60, 2.0, 0.1, 0.0),
    fs.NoisyLinearCosineDecay(100),
    fs.NoisyLinearCosineDecay(60, 0.3, 1.0, 1.5, 0.05, 0.002, seed=2**70 + 3),
    fs.NoisyLinearCosineDecay(60, seed=-12345),
    fs.PiecewiseConstant([10, 50, 51], [1.0, 0.5, 0.25, 0.01]),
    fs.PiecewiseConstant([], [0.3]),
    fs.LinearWarmup(fs.CosineDecay(100), 20, 0.0, 0.1),
    fs.LinearWarmup(0.05, 10, 0.001, 0.05),
    fs.LinearWarmup(fs.CyclicLR(0.01, 0.1, 5), 7, 0.0, 0.01),
    fs.LinearWarmup(fs.ChainedScheduler([fs.ExponentialDecay(10, 0.5), fs.StepLR(30)]), 5, 0, 1),
    fs.NoamDecay(512, 40),
    fs.WarmupStableDecay(20, 50, 30),
    fs.WarmupStableDecay(10, 0, 40, 0.1, "cosine", "linear"),
    fs.WarmupStableDecay(15, 10, 20, 0.05, "1-sqrt", "1-sqrt"),
    fs.WarmupStableDecay(0, 0, 0, 0.3),
    fs.InverseSqrt(20),
    fs.InverseSqrt(0),
    fs.InverseSqrt(30, timescale=7),
    fs.WarmupCosine(20, 120),
    fs.WarmupCosine(0, 50, 0.1),
]

# issue 13: optax / HF parameters and kinds, warmup from 0, SWALR
PEER_CASES = [
    fs.ExponentialDecay(9, 0.7, transition_begin=13, end_value=0.02),
    fs.ExponentialDecay(5, 1.2, staircase=True, transition_begin=3, end_value=2.5),
    fs.CosineDecay(77, 0.05, exponent=2.5),
    fs.WarmupCosine(11, 131, 0.1, exponent=0.6),
    fs.WarmupStableDecay(13, 21, 57, 0.05, "1-sqrt", "cosine", num_cycles=1.75),
    fs.MultiStepLR([90, 7, 33, 7, 0], 0.6),
    fs.SWALR(0.01, 37),
    fs.SWALR([0.02, 0.005, 0.3], 1, "linear"),
    fs.SWALR(0.5, 0),
    fs.RelativeWarmup(fs.CosineDecay(101), 17),
    fs.RelativeWarmup(fs.CyclicLR(0.01, 0.1, 9), 13, prefix=False),
    fs.RelativeWarmup(None, 19),
    fs.JoinSchedules([fs.LinearLR(0.5, 1.0, 7), fs.CosineDecay(50), fs.StepLR(9, 0.7)],
                     [23, 11]),
    fs.JoinSchedules([fs.StepLR(3), fs.ExponentialLR(0.97)], [0]),
    fs.PiecewiseInterpolate("linear", {0: 0.5, 23: 3.0, 61: 0.1, 200: 0.5}),
    fs.PiecewiseInterpolate("cosine", [(17, 4.0), (101, 0.01)], init_value=0.02),
    fs.LinearOneCycle(173, [0.1, 0.3, 0.05], 0.27, 0.79, 13.0, 300.0),
    fs.LinearWithWarmup(29, 301),
    fs.CosineWithWarmup(31, 257, 1.3, 0.07),
    fs.CosineWithHardRestarts(17, 311, 3.5),
    fs.PolynomialWithWarmup(19, 283, lr_init=0.03, lr_end=1e-4, power=1.7),
    fs.CosineWarmupWithMinLR(23, 277, 0.5, 0.1),
    fs.CosineWarmupWithMinLR(23, 277, 0.8, 0.0, warmup_lr_rate=0.25),
]
CASES += PEER_CASES


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(abs(a), abs(b)) + 1e-300


@pytest.mark.parametrize("spec", CASES, ids=repr)
@pytest.mark.parametrize("base_lr", [1.0, 0.03])
def test_matches_reference_over_many_steps(spec, base_lr):
    n = 400
    got = spec.values(n, base_lr).tolist()
    moms = spec.momentum_values(n).tolist()
    for t in range(n):
        want = reference.schedule_lr(spec, t, base_lr)
        assert _agree(got[t], want), (t, got[t], want)
        m = reference.schedule_momentum(spec, t)
        assert math.isnan(moms[t]) if m is None else _agree(moms[t], m), (t, moms[t], m)


@pytest.mark.parametrize("spec", CASES[::3] + PEER_CASES[::2], ids=repr)
def test_through_the_optimizer_per_group(spec):
    lrs = (0.1, 0.02, 0.5)
    groups = [{"params": [torch.zeros(2, dtype=torch.float64)], "lr": lr} for lr in lrs]
    opt = fusedlr.SGD(groups, lr=0.1, schedule=spec)
    for t in range(60):
        got = [float(x) for x in opt.get_last_lr()]
        want = [reference.schedule_lr(spec, t, lr, g) for g, lr in enumerate(lrs)]
        assert all(_agree(a, b) for a, b in zip(got, want, strict=True)), (t, got, want)
        opt.step()


def at(spec, t, base_lr=0.1):
    return spec.values(1, base_lr, start=t).item()


# -- worked by hand: base lr 0.1 unless stated -----------------------------------------------------


def test_exponential_decay_by_hand():
    s = fs.ExponentialDecay(decay_steps=10, decay_rate=0.5)
    assert at(s, 0) == pytest.approx(0.1, rel=REL)
    assert at(s, 5) == pytest.approx(0.1 * 0.5 ** (5 / 10), rel=REL)  # 0.0707106...
    assert at(s, 25) == pytest.approx(0.1 * 0.5**2.5, rel=REL)
    stair = fs.ExponentialDecay(10, 0.5, staircase=True)
    assert at(stair, 25) == pytest.approx(0.1 * 0.5**2, rel=REL)  # floor(25 / 10) = 2
    assert at(stair, 9) == pytest.approx(0.1, rel=REL)


def test_natural_exp_decay_by_hand():
    s = fs.NaturalExpDecay(decay_steps=10, decay_rate=0.3)
    assert at(s, 5) == pytest.approx(0.1 * math.exp(-0.3 * 0.5), rel=REL)
    assert at(s, 40) == pytest.approx(0.1 * math.exp(-1.2), rel=REL)
    assert at(fs.NaturalExpDecay(10, 0.3, True), 25) == pytest.approx(0.1 * math.exp(-0.6), rel=REL)
    # Paddle NaturalExpDecay(gamma=0.2) is exp(-gamma * t): decay_steps = 1
    assert at(fs.NaturalExpDecay(1, 0.2), 3) == pytest.approx(0.1 * math.exp(-0.6), rel=REL)


def test_inverse_time_decay_by_hand():
    s = fs.InverseTimeDecay(decay_steps=10, decay_rate=0.5)
    assert at(s, 5) == pytest.approx(0.1 / (1 + 0.5 * 0.5), rel=REL)  # 0.08
    assert at(s, 20) == pytest.approx(0.05, rel=REL)  # 0.1 / (1 + 0.5 * 2)
    stair = fs.InverseTimeDecay(10, 0.5, staircase=True)
    assert at(stair, 19) == pytest.approx(0.1 / 1.5, rel=REL)  # floor(1.9) = 1


def test_polynomial_decay_by_hand():
    s = fs.PolynomialDecay(decay_steps=10, end_learning_rate=0.01, power=2.0)
    assert at(s, 5) == pytest.approx((0.1 - 0.01) * (1 - 5 / 10) ** 2 + 0.01, rel=REL)  # 0.0325
    assert at(s, 10) == pytest.approx(0.01, rel=REL)
    assert at(s, 15) == pytest.approx(0.01, rel=REL)  # held past decay_steps
    cyc = fs.PolynomialDecay(10, 0.01, 2.0, cycle=True)
    # TF cycle: horizon = 10 * ceil(15 / 10) = 20
    assert at(cyc, 15) == pytest.approx(0.09 * (1 - 15 / 20) ** 2 + 0.01, rel=REL)  # 0.015625
    assert at(cyc, 20) == pytest.approx(0.01, rel=REL)  # horizon 20: the end value
    assert at(cyc, 0) == pytest.approx(0.1, rel=REL)  # horizon = decay_steps at t = 0


def test_cosine_decay_by_hand():
    s = fs.CosineDecay(decay_steps=10, alpha=0.2)
    assert at(s, 0) == pytest.approx(0.1, rel=REL)
    assert at(s, 5) == pytest.approx(0.1 * (0.8 * 0.5 + 0.2), rel=REL)  # cos(pi / 2) = 0: 0.06
    assert at(s, 10) == pytest.approx(0.1 * 0.2, rel=REL)
    assert at(s, 30) == pytest.approx(0.1 * 0.2, rel=REL)  # held


def test_cosine_decay_restarts_by_hand():
    s = fs.CosineDecayRestarts(first_decay_steps=10, t_mul=2.0, m_mul=0.5)
    assert at(s, 5) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 2)), rel=REL)  # 0.05
    # t = 10: c = 1 = S_1, restart i = 1, f = 0: 0.1 * 0.5 ** 1
    assert at(s, 10) == pytest.approx(0.05, rel=REL)
    # t = 20: c = 2, f = (2 - 1) / 2 = 0.5: 0.1 * 0.5 * (1 + cos(pi / 2)) / 2
    assert at(s, 20) == pytest.approx(0.025, rel=REL)
    # t = 30: c = 3 = S_2 = (1 - 2 ** 2) / (1 - 2), i = 2, f = 0: 0.1 * 0.25
    assert at(s, 30) == pytest.approx(0.025, rel=REL)
    flat = fs.CosineDecayRestarts(10, t_mul=1.0, alpha=0.1)
    # t = 25: i = 2, f = 0.5: 0.1 * (0.9 * 0.5 + 0.1)
    assert at(flat, 25) == pytest.approx(0.055, rel=REL)


def test_linear_cosine_decay_by_hand():
    s = fs.LinearCosineDecay(decay_steps=10, num_periods=0.5, alpha=0.0, beta=0.001)
    assert at(s, 0) == pytest.approx(0.1 * (1.0 * 1.0 + 0.001), rel=REL)
    # t = 5: linear = 0.5, cosine = (1 + cos(pi * 2 * 0.5 * 0.5)) / 2 = 0.5
    assert at(s, 5) == pytest.approx(0.1 * (0.5 * 0.5 + 0.001), rel=REL)  # 0.0251
    assert at(s, 10) == pytest.approx(0.1 * 0.001, rel=REL)  # linear 0, cosine 0
    assert at(s, 99) == pytest.approx(0.1 * 0.001, rel=REL)


def _splitmix64(x):
    # SplitMix64 (Steele, Lea, Flood 2014), as published
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def _normal(seed, t):
    x = (seed * 0x9E3779B97F4A7C15 + 2 * t) & ((1 << 64) - 1)
    u1 = ((_splitmix64(x) >> 12) + 0.5) / 2.0**52
    u2 = ((_splitmix64((x + 1) & ((1 << 64) - 1)) >> 12) + 0.5) / 2.0**52
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


def test_splitmix64_published_vector():
    # first output of the reference SplitMix64 generator seeded with 0
    assert _splitmix64(0) == 0xE220A8397B1DCDAF
    assert reference.splitmix64(0) == 0xE220A8397B1DCDAF


def test_noisy_linear_cosine_decay_by_hand():
    s = fs.NoisyLinearCosineDecay(decay_steps=10, initial_variance=1.0, variance_decay=0.55,
                                  seed=7)
    # t = 5: linear 0.5, cosine 0.5, std = sqrt(1 / (1 + 5) ** 0.55)
    z = _normal(7, 5)
    assert z == reference.noise_normal(7, 5)
    want = 0.1 * ((0.0 + 0.5 + math.sqrt(1 / 6**0.55) * z) * 0.5 + 0.001)
    assert at(s, 5) == pytest.approx(want, rel=REL)
    # t = 0: cosine 1, linear 1, std 1
    assert at(s, 0) == pytest.approx(0.1 * ((1.0 + _normal(7, 0)) * 1.0 + 0.001), rel=REL)
    # t = 10 (and after): cosine 0, so the noise vanishes: 0.1 * beta
    assert at(s, 10) == pytest.approx(0.1 * 0.001, rel=REL)
    # deterministic in (seed, t): resuming at t = 5 gives the same value
    assert s.values(8, 0.1)[5].item() == at(s, 5)


def test_piecewise_constant_by_hand():
    s = fs.PiecewiseConstant(boundaries=[10, 20], values=[1.0, 0.5, 0.1])
    assert at(s, 10) == 1.0  # Keras: t <= boundaries[0] gives values[0] (absolute lr)
    assert at(s, 11) == 0.5
    assert at(s, 20) == 0.5
    assert at(s, 21) == 0.1
    assert s.values[1] == 0.5  # the Keras argument, still readable


def test_linear_warmup_by_hand():
    s = fs.LinearWarmup(fs.CosineDecay(10), warmup_steps=5, start_lr=0.0, end_lr=0.1)
    assert at(s, 2) == pytest.approx((0.1 - 0.0) * 2 / 5 + 0.0, rel=REL)  # 0.04
    assert at(s, 5) == pytest.approx(0.1, rel=REL)  # CosineDecay restarted at 0
    assert at(s, 10) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 5 / 10)), rel=REL)
    const = fs.LinearWarmup(0.3, warmup_steps=4, start_lr=0.1, end_lr=0.3)
    assert at(const, 1) == pytest.approx(0.2 * 1 / 4 + 0.1, rel=REL)  # 0.15
    assert at(const, 4, base_lr=7.0) == 0.3  # a number: constant absolute lr


def test_noam_decay_by_hand():
    s = fs.NoamDecay(d_model=512, warmup_steps=4000)
    assert at(s, 0, 1.0) == 0.0
    assert at(s, 4000, 1.0) == pytest.approx(512**-0.5 * 4000**-0.5, rel=REL)  # the peak
    assert at(s, 16000, 1.0) == pytest.approx(512**-0.5 / 16000**0.5, rel=REL)


def test_warmup_stable_decay_by_hand():
    s = fs.WarmupStableDecay(10, 20, 10, min_lr_ratio=0.1, decay_type="linear")
    assert at(s, 5) == pytest.approx(0.1 * (0.5 * 0.9 + 0.1), rel=REL)  # 0.055
    assert at(s, 15) == pytest.approx(0.1, rel=REL)  # stable
    assert at(s, 35) == pytest.approx(0.1 * ((1 - 0.5) * 0.9 + 0.1), rel=REL)
    assert at(s, 40) == pytest.approx(0.1 * 0.1, rel=REL)  # r afterwards
    sqrt_decay = fs.WarmupStableDecay(10, 20, 10, decay_type="1-sqrt")
    assert at(sqrt_decay, 35) == pytest.approx(0.1 * (1 - math.sqrt(0.5)), rel=REL)
    cos_decay = fs.WarmupStableDecay(10, 20, 10)  # HF's default decay_type: cosine
    assert at(cos_decay, 35) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 2)), rel=REL)


def test_inverse_sqrt_by_hand():
    s = fs.InverseSqrt(warmup_steps=100)
    assert at(s, 50) == pytest.approx(0.1 * 50 / 100, rel=REL)
    assert at(s, 100) == pytest.approx(0.1, rel=REL)
    assert at(s, 300) == pytest.approx(0.1 / math.sqrt(3), rel=REL)  # (300 + 100 - 100) / 100
    ts = fs.InverseSqrt(100, timescale=50)
    assert at(ts, 150) == pytest.approx(0.1 / math.sqrt((150 + 50 - 100) / 50), rel=REL)


def test_warmup_cosine_by_hand():
    s = fs.WarmupCosine(warmup_steps=10, total_steps=110, end_factor=0.1)
    assert at(s, 5) == pytest.approx(0.05, rel=REL)  # 0.1 * 5 / 10
    # t = 60: k = 50 of D = 100: 0.1 * (0.9 * (1 + cos(pi / 2)) / 2 + 0.1)
    assert at(s, 60) == pytest.approx(0.1 * (0.9 * 0.5 + 0.1), rel=REL)
    assert at(s, 110) == pytest.approx(0.01, rel=REL)
    assert at(s, 500) == pytest.approx(0.01, rel=REL)  # held, as optax
