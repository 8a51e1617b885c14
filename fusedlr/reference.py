"""Independent pure-Python / pure-torch reference of every fusedlr formula (the test oracle).

Written from the frameworks' published formulas and source (torch ``torch/optim/lr_scheduler.py``,
``swa_utils.py``, ``sgd.py``, ``adam.py``; Keras ``learning_rate_schedule.py`` and TF1
``learning_rate_decay.py``; Paddle ``python/paddle/optimizer/lr.py``; HF transformers
``optimization.py``; optax ``optax/schedules/_schedule.py`` and ``_join.py``), never from
fusedlr's own code.

Schedules are evaluated with plain Python floats (float64).  A schedule spec is any object whose
class name is the schedule name and whose attributes are the constructor arguments (see
``fusedlr.schedules``); dispatch is on ``type(spec).__name__`` only.

Time convention: ``t = 0`` is the value before any ``scheduler.step()`` (torch's lr right after
constructing the scheduler), ``t = k`` the value after ``k`` calls.  For TF/Keras, Paddle, HF and
optax schedules ``t`` is their ``step`` / ``last_epoch`` / ``count``.

Where frameworks disagree, the schedule follows the framework whose name it carries:

* torch schedulers reproduce torch's *actual* recursive trajectory, past every horizon
  (``CosineAnnealingLR`` keeps oscillating with period ``2 * T_max``; ``LinearLR``,
  ``PolynomialLR``, ``ConstantLR`` hold their final value; ``OneCycleLR`` raises for
  ``t > total_steps``).
* ``NaturalExpDecay`` is TF1 ``natural_exp_decay`` (``exp(-rate * t / decay_steps)``); Paddle's
  ``NaturalExpDecay(gamma)`` has no ``decay_steps`` (it is the TF form with ``decay_steps = 1``).
* ``PiecewiseConstant`` is Keras ``PiecewiseConstantDecay`` (``t <= boundaries[0]`` gives
  ``values[0]``); Paddle ``PiecewiseDecay`` switches one step earlier (``t < boundaries[0]``).
* ``PolynomialDecay(cycle=True)`` is TF (Paddle agrees): horizon ``decay_steps * ceil(t /
  decay_steps)``, ``decay_steps`` at ``t = 0``.
* ``CosineDecayRestarts`` finds the restart index exactly instead of Keras'
  ``floor(log(...) / log(t_mul))``, which can land one period early at an exact restart step.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

import torch
from torch.optim import Optimizer

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "noise_normal",
    "schedule_lr",
    "schedule_momentum",
    "splitmix64",
]


# --------------------------------------------------------------------------------------------
# helpers


def _per_group(value, group: int) -> float:
    """A scalar argument, or the ``group``-th entry of a per-group sequence."""
    if isinstance(value, (tuple, list)):
        return float(value[group])
    return float(value)


def _cos_factor(fraction: float) -> float:
    """``(1 + cos(pi * fraction)) / 2``."""
    return 0.5 * (1.0 + math.cos(math.pi * fraction))


# --------------------------------------------------------------------------------------------
# counter-based normal noise (shared with the C++ kernel)

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x: int) -> int:
    """SplitMix64 finaliser of ``x + 0x9E3779B97F4A7C15`` (all arithmetic modulo 2**64).

    ``z = x + 0x9E3779B97F4A7C15; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z >> 27) * 0x94D049BB133111EB; return z ^ z >> 31``.
    """
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _open_unit(h: int) -> float:
    """The top 52 bits of ``h`` as a double strictly inside (0, 1): ``((h >> 12) + 0.5) / 2**52``.

    Exact in float64 (53 significant bits), so the C++ kernel gets the identical value.
    """
    return ((h >> 12) + 0.5) * 2.0**-52


def noise_normal(seed: int, t: int) -> float:
    """Standard normal deviate, a deterministic function of ``(seed, t)`` (Box-Muller).

    ``x = (seed * 0x9E3779B97F4A7C15 + 2 t) mod 2**64`` (2 t: neighbouring steps share no draw),
    ``u1 = open_unit(splitmix64(x))``, ``u2 = open_unit(splitmix64(x + 1 mod 2**64))``,
    ``open_unit(h) = ((h >> 12) + 0.5) / 2**52``,
    ``z = sqrt(-2 ln u1) * cos(2 pi u2)``.  ``seed`` is taken modulo 2**64 (two's complement).
    """
    x = (seed * _GOLDEN + 2 * t) & _MASK64
    u1 = _open_unit(splitmix64(x))
    u2 = _open_unit(splitmix64((x + 1) & _MASK64))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


# --------------------------------------------------------------------------------------------
# torch.optim.lr_scheduler


def _step_lr(s, t, base, group):
    """torch StepLR: ``base * gamma ** (t // step_size)``."""
    return base * s.gamma ** (t // s.step_size)


def _multi_step_lr(s, t, base, group):
    """torch MultiStepLR: ``base * gamma ** #{m in milestones : m <= t}`` (duplicates count)."""
    return base * s.gamma ** sum(1 for m in s.milestones if m <= t)


def _constant_lr(s, t, base, group):
    """torch ConstantLR: ``base * factor`` for ``t < total_iters``, then ``base``.

    torch restores the lr only at ``last_epoch == total_iters``; with ``total_iters == 0`` that
    never happens after t = 0, so the factor applies forever (mirrored).
    """
    if t < s.total_iters or s.total_iters == 0:
        return base * s.factor
    return base


def _linear_lr(s, t, base, group):
    """torch LinearLR: ``base * (start + (end - start) * min(t, total_iters) / total_iters)``.

    With ``total_iters == 0`` torch keeps ``base * start_factor`` forever (mirrored).
    """
    if s.total_iters == 0:
        return base * s.start_factor
    k = min(t, s.total_iters)
    return base * (s.start_factor + (s.end_factor - s.start_factor) * k / s.total_iters)


def _exponential_lr(s, t, base, group):
    """torch ExponentialLR: ``base * gamma ** t``."""
    return base * s.gamma**t


def _polynomial_lr(s, t, base, group):
    """torch PolynomialLR: ``base * (1 - min(t, total_iters) / total_iters) ** power``.

    With ``total_iters == 0`` torch never changes the lr (mirrored: ``base``).
    """
    if s.total_iters == 0:
        return base
    return base * (1.0 - min(t, s.total_iters) / s.total_iters) ** s.power


def _cosine_annealing_lr(s, t, base, group):
    """torch CosineAnnealingLR: ``eta_min + (base - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    ``eta_min`` is absolute.  For every t, including past ``T_max``: torch's recursive update
    (with its special case at ``t = T_max + 1 (mod 2 T_max)``) traces this closed form, so the lr
    rises again after ``T_max`` with period ``2 * T_max``.
    """
    return s.eta_min + (base - s.eta_min) * _cos_factor(t / s.T_max)


def _sequential_lr(s, t, base, group):
    """torch SequentialLR: child ``i = bisect_right(milestones, t)`` evaluated at
    ``t - milestones[i - 1]`` (``t`` for the first child), from the same base lr.

    Matches torch for children that torch restarts with a closed form (every built-in except
    MultiplicativeLR, which torch restarts from the previous child's last lr).
    """
    i = bisect_right(list(s.milestones), t)
    local = t - s.milestones[i - 1] if i > 0 else t
    return schedule_lr(s.schedules[i], local, base, group)


def _chained_scheduler(s, t, base, group):
    """torch ChainedScheduler: ``c_n(... c_2(c_1(base)))``, each child's output is the next
    child's base lr, all at the same t.

    Equal to torch's trajectory when the children are multiplicative (StepLR, MultiStepLR,
    ConstantLR, LinearLR, ExponentialLR, PolynomialLR, MultiplicativeLR, CosineAnnealingLR with
    eta_min = 0 before T_max): torch then multiplies the factors.  Children that torch computes
    from its base lrs (LambdaLR, CyclicLR, OneCycleLR, cosine past T_max) do not compose that way
    in torch.
    """
    lr = base
    for child in s.schedules:
        lr = schedule_lr(child, t, lr, group)
    return lr


def _pick_group(fn, group):
    if isinstance(fn, (tuple, list)) and fn and callable(fn[0]):
        return fn[group]  # one callable per param group, as torch allows
    return fn


def _clamp_table(t, total_steps):
    return t if total_steps is None else min(t, total_steps - 1)


def _lambda_lr(s, t, base, group):
    """torch LambdaLR: ``base * lr_lambda(min(t, total_steps - 1))``.

    ``lr_lambda`` may be a callable, a table (``lr_lambda[n]``), or one callable per group.
    Past ``total_steps`` the last value is held (torch would keep calling the lambda).
    """
    fn = _pick_group(s.lr_lambda, group)
    n = _clamp_table(t, s.total_steps)
    return base * (float(fn(n)) if callable(fn) else float(fn[min(n, len(fn) - 1)]))


def _multiplicative_lr(s, t, base, group):
    """torch MultiplicativeLR: ``base * prod_{i=1..min(t, total_steps-1)} lr_lambda(i)``.

    A callable is multiplied in torch's order (bit-identical to torch's recursion).  A table
    (sequence of numbers) is the already-multiplied running product, as ``fusedlr.schedules``
    stores it: ``base * lr_lambda[min(t, total_steps - 1)]``.
    """
    fn = _pick_group(s.lr_lambda, group)
    n = _clamp_table(t, s.total_steps)
    if not callable(fn):
        return base * float(fn[min(n, len(fn) - 1)])
    lr = base
    for i in range(1, n + 1):
        lr *= float(fn(i))
    return lr


def _cosine_annealing_warm_restarts(s, t, base, group):
    """torch CosineAnnealingWarmRestarts (SGDR): with ``T_i = T_0 * T_mult ** i`` the period
    containing t and ``T_cur`` the steps since it began,
    ``eta_min + (base - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``.
    """
    t_cur, t_i = t, s.T_0
    if s.T_mult == 1:
        t_cur = t % s.T_0
    else:
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= s.T_mult
    return s.eta_min + (base - s.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def _cyclic_position(s, t):
    """torch CyclicLR: (scale_factor, scale) where lr = base + (max - base) * factor * scale."""
    up = float(s.step_size_up)
    down = float(s.step_size_down) if s.step_size_down is not None else up
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    factor = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    if s.scale_fn is not None:
        scale = s.scale_fn(cycle if s.scale_mode == "cycle" else t)
    elif s.mode == "triangular":
        scale = 1.0
    elif s.mode == "triangular2":
        scale = 1 / (2.0 ** (cycle - 1))
    elif s.mode == "exp_range":
        scale = s.gamma**t
    else:
        raise ValueError(f"CyclicLR: unknown mode {s.mode!r}")
    return factor, scale


def _cyclic_lr(s, t, base, group):
    """torch CyclicLR (absolute lrs; the group's base lr is ignored).

    ``total = up + down``, ``cycle = floor(1 + t / total)``, ``x = 1 + t / total - cycle``,
    ``f = x / r`` if ``x <= r`` else ``(x - 1) / (r - 1)`` with ``r = up / total``;
    ``lr = base_lr + (max_lr - base_lr) * f * scale``, ``scale`` = 1 (triangular),
    ``1 / 2 ** (cycle - 1)`` (triangular2), ``gamma ** t`` (exp_range) or
    ``scale_fn(cycle or t)`` per ``scale_mode``.
    """
    lo, hi = _per_group(s.base_lr, group), _per_group(s.max_lr, group)
    factor, scale = _cyclic_position(s, t)
    return lo + (hi - lo) * factor * scale


def _cyclic_momentum(s, t, group):
    """torch CyclicLR momentum: ``max_momentum - (max_momentum - base_momentum) * f * scale``."""
    lo, hi = _per_group(s.base_momentum, group), _per_group(s.max_momentum, group)
    factor, scale = _cyclic_position(s, t)
    return hi - (hi - lo) * factor * scale


def _one_cycle(s, t, group, momentum):
    total = s.total_steps if s.total_steps is not None else s.epochs * s.steps_per_epoch
    if t > total:
        raise ValueError(f"OneCycleLR: step {t} is past total_steps={total} (torch raises)")
    max_lr = _per_group(s.max_lr, group)
    initial = max_lr / s.div_factor
    lrs = {"initial": initial, "max": max_lr, "min": initial / s.final_div_factor}
    moms = {"max": _per_group(s.max_momentum, group), "base": _per_group(s.base_momentum, group)}
    if s.three_phase:
        phases = [
            (float(s.pct_start * total) - 1, "initial", "max", "max", "base"),
            (float(2 * s.pct_start * total) - 2, "max", "initial", "base", "max"),
            (total - 1, "initial", "min", "max", "max"),
        ]
    else:
        phases = [
            (float(s.pct_start * total) - 1, "initial", "max", "max", "base"),
            (total - 1, "max", "min", "base", "max"),
        ]
    start_step = 0.0
    for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
        if t <= end_step or i == len(phases) - 1:
            pct = (t - start_step) / (end_step - start_step)
            a, b = (moms[m0], moms[m1]) if momentum else (lrs[lr0], lrs[lr1])
            if s.anneal_strategy == "cos":
                return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
            if s.anneal_strategy == "linear":
                return (b - a) * pct + a
            raise ValueError(f"OneCycleLR: unknown anneal_strategy {s.anneal_strategy!r}")
        start_step = end_step
    raise AssertionError("unreachable")


def _one_cycle_lr(s, t, base, group):
    """torch OneCycleLR (absolute; the group's base lr is ignored).

    ``initial = max_lr / div_factor``, ``min = initial / final_div_factor``; phases end at
    ``pct_start * total - 1`` (initial -> max) and ``total - 1`` (max -> min), or with
    ``three_phase`` at ``pct_start * total - 1``, ``2 * pct_start * total - 2``, ``total - 1``
    (initial -> max -> initial -> min).  Within a phase ``pct = (t - start) / (end - start)``
    and ``cos``: ``b + (a - b) / 2 * (cos(pi * pct) + 1)``, ``linear``: ``(b - a) * pct + a``.
    ``t == total_steps`` extrapolates the last phase (torch allows it); ``t > total_steps``
    raises ValueError as torch does.
    """
    return _one_cycle(s, t, group, momentum=False)


def _noam_decay(s, t, base, group):
    """Paddle NoamDecay: ``base * d_model ** -0.5 * min(a, t * warmup_steps ** -1.5)``,
    ``a = 1`` at t = 0 else ``t ** -0.5`` (so the lr is 0 at t = 0)."""
    a = 1 if t == 0 else t**-0.5
    b = s.warmup_steps**-1.5 * t
    return base * (s.d_model**-0.5) * min(a, b)


# --------------------------------------------------------------------------------------------
# TF / Keras and Paddle (the group's base lr is initial_learning_rate)


def _decay_progress(s, t):
    p = t / s.decay_steps
    return math.floor(p) if s.staircase else p


def _exponential_decay(s, t, base, group):
    """Keras ExponentialDecay: ``base * decay_rate ** p``, ``p = t / decay_steps``, floored if
    ``staircase``.  (Paddle ExponentialDecay(gamma) is ``decay_steps = 1``.)

    With optax's ``transition_begin`` B and ``end_value`` (optax exponential_decay):
    ``c = t - B``, ``p = c / decay_steps`` (floored if staircase), ``base`` where ``c <= 0`` else
    ``base * decay_rate ** p``; then, with an end_value, ``max(v, end_value)`` if
    ``decay_rate < 1`` else ``min(v, end_value)``, at every step.
    """
    begin = getattr(s, "transition_begin", 0)
    end_value = getattr(s, "end_value", None)
    count = t - begin
    p = count / s.decay_steps
    if s.staircase:
        p = math.floor(p)
    v = base if count <= 0 else base * s.decay_rate**p
    if end_value is not None:
        v = max(v, end_value) if s.decay_rate < 1.0 else min(v, end_value)
    return v


def _natural_exp_decay(s, t, base, group):
    """TF1 natural_exp_decay: ``base * exp(-decay_rate * p)``, ``p = t / decay_steps``, floored if
    ``staircase``.  Paddle NaturalExpDecay(gamma) is ``base * exp(-gamma * t)``: no decay_steps,
    no staircase (the TF form with ``decay_steps = 1``)."""
    return base * math.exp(-s.decay_rate * _decay_progress(s, t))


def _inverse_time_decay(s, t, base, group):
    """Keras InverseTimeDecay: ``base / (1 + decay_rate * p)``, ``p = t / decay_steps``, floored
    if ``staircase``.  (Paddle InverseTimeDecay(gamma) is ``decay_steps = 1``.)"""
    return base / (1 + s.decay_rate * _decay_progress(s, t))


def _polynomial_decay(s, t, base, group):
    """Keras/TF PolynomialDecay:
    ``(base - end_learning_rate) * (1 - step / horizon) ** power + end_learning_rate``;
    without ``cycle``: ``step = min(t, decay_steps)``, ``horizon = decay_steps``;
    with ``cycle``: ``step = t``, ``horizon = decay_steps * ceil(t / decay_steps)`` (``decay_steps``
    at t = 0).  ``end_learning_rate`` is absolute.  Paddle PolynomialDecay agrees."""
    horizon = float(s.decay_steps)
    step = float(t)
    if s.cycle:
        horizon *= 1.0 if t == 0 else math.ceil(t / s.decay_steps)
    else:
        step = min(step, horizon)
    return (base - s.end_learning_rate) * (1 - step / horizon) ** s.power + s.end_learning_rate


def _cosine_decay(s, t, base, group):
    """Keras CosineDecay (no warmup): ``base * ((1 - alpha) * (1 + cos(pi * s / decay_steps)) / 2
    + alpha)`` with ``s = min(t, decay_steps)``.  optax cosine_decay_schedule's ``exponent`` e
    raises the cosine factor: ``(1 - alpha) * cosine ** e + alpha``."""
    step = min(t, s.decay_steps)
    cosine = _cos_factor(step / s.decay_steps) ** getattr(s, "exponent", 1.0)
    return base * ((1 - s.alpha) * cosine + s.alpha)


def _cosine_decay_restarts(s, t, base, group):
    """Keras CosineDecayRestarts (SGDR): ``c = t / first_decay_steps``; period ``i`` covers
    ``S_i <= c < S_{i+1}`` with ``S_i = (1 - t_mul ** i) / (1 - t_mul)`` (``S_i = i`` when
    ``t_mul == 1``); ``f = (c - S_i) / t_mul ** i``;
    ``lr = base * ((1 - alpha) * m_mul ** i * (1 + cos(pi * f)) / 2 + alpha)``.

    ``i`` is found exactly; Keras' ``floor(log(1 - c (1 - t_mul)) / log(t_mul))`` can round down
    at an exact restart step (then it gives ``alpha * base`` where this gives the restart value).
    """
    c = t / s.first_decay_steps
    if s.t_mul == 1.0:
        i = math.floor(c)
        frac = c - i
    else:

        def start(n):
            return (1.0 - s.t_mul**n) / (1.0 - s.t_mul)

        i = 0
        while c >= start(i + 1):
            i += 1
        frac = (c - start(i)) / s.t_mul**i
    cosine = 0.5 * s.m_mul**i * (1.0 + math.cos(math.pi * frac))
    return base * ((1 - s.alpha) * cosine + s.alpha)


def _linear_cosine_parts(s, t):
    step = min(t, s.decay_steps)
    linear = (s.decay_steps - step) / s.decay_steps
    cosine = _cos_factor(2.0 * s.num_periods * step / s.decay_steps)
    return step, linear, cosine


def _linear_cosine_decay(s, t, base, group):
    """TF LinearCosineDecay: ``s = min(t, decay_steps)``,
    ``linear = (decay_steps - s) / decay_steps``,
    ``cosine = (1 + cos(pi * 2 * num_periods * s / decay_steps)) / 2``,
    ``lr = base * ((alpha + linear) * cosine + beta)``."""
    _, linear, cosine = _linear_cosine_parts(s, t)
    return base * ((s.alpha + linear) * cosine + s.beta)


def _noisy_linear_cosine_decay(s, t, base, group):
    """TF NoisyLinearCosineDecay: LinearCosineDecay with ``linear`` replaced by
    ``linear + sqrt(initial_variance / (1 + s) ** variance_decay) * noise_normal(seed, t)``.

    As TF, ``s = min(t, decay_steps)`` everywhere in the formula (the variance too); the noise
    is drawn afresh each step, here as the deterministic ``noise_normal(seed, t)`` of the raw t.
    """
    step, linear, cosine = _linear_cosine_parts(s, t)
    std = math.sqrt(s.initial_variance / (1.0 + step) ** s.variance_decay)
    noisy = linear + std * noise_normal(s.seed, t)
    return base * ((s.alpha + noisy) * cosine + s.beta)


def _piecewise_constant(s, t, base, group):
    """Keras PiecewiseConstantDecay (absolute values): ``values[0]`` for ``t <= boundaries[0]``,
    ``values[i]`` for ``boundaries[i-1] < t <= boundaries[i]``, ``values[-1]`` past the last.
    Paddle PiecewiseDecay uses ``t < boundaries[i]`` instead (switches one step earlier)."""
    return float(s.values[bisect_left(list(s.boundaries), t)])


def _linear_warmup(s, t, base, group):
    """Paddle LinearWarmup: ``(end_lr - start_lr) * t / warmup_steps + start_lr`` for
    ``t < warmup_steps`` (absolute), then the wrapped schedule at ``t - warmup_steps`` from the
    group's base lr, or the constant lr ``schedule`` if it is a number."""
    if t < s.warmup_steps:
        return (s.end_lr - s.start_lr) * float(t) / float(s.warmup_steps) + s.start_lr
    if isinstance(s.schedule, (int, float)):
        return float(s.schedule)
    return schedule_lr(s.schedule, t - s.warmup_steps, base, group)


# --------------------------------------------------------------------------------------------
# modern schedules


def _warmup_stable_decay(s, t, base, group):
    """HF transformers get_wsd_schedule, factor of ``base``:

    * ``t < W``: ``p = t / max(1, W)``; linear ``p``, cosine ``(1 - cos(pi p)) / 2``,
      1-sqrt ``1 - sqrt(1 - p)``; then ``f * (1 - r) + r`` (r = min_lr_ratio; HF warms up
      from ``r``, not from 0);
    * ``t < W + S``: 1;
    * ``t < W + S + D``: ``p = (t - W - S) / max(1, D)``; linear ``1 - p``, cosine
      ``(1 + cos(pi * num_cycles * 2 * p)) / 2`` (num_cycles 0.5 by default), 1-sqrt
      ``1 - sqrt(p)``; then ``f * (1 - r) + r``;
    * afterwards ``r``.
    """
    w, st, d, r = s.warmup_steps, s.stable_steps, s.decay_steps, s.min_lr_ratio
    if t < w:
        p = float(t) / float(max(1, w))
        kind = s.warmup_type
        if kind == "linear":
            f = p
        elif kind == "cosine":
            f = 0.5 * (1.0 - math.cos(math.pi * p))
        elif kind == "1-sqrt":
            f = 1.0 - math.sqrt(1.0 - p)
        else:
            raise ValueError(f"WarmupStableDecay: unknown warmup_type {kind!r}")
        return base * max(0.0, f * (1.0 - r) + r)
    if t < w + st:
        return base * 1.0
    if t < w + st + d:
        p = float(t - w - st) / float(max(1, d))
        kind = s.decay_type
        if kind == "linear":
            f = 1.0 - p
        elif kind == "cosine":
            cycles = getattr(s, "num_cycles", 0.5)
            f = 0.5 * (1.0 + math.cos(math.pi * float(cycles) * 2.0 * p))
        elif kind == "1-sqrt":
            f = 1.0 - math.sqrt(p)
        else:
            raise ValueError(f"WarmupStableDecay: unknown decay_type {kind!r}")
        return base * max(0.0, f * (1.0 - r) + r)
    return base * r


def _inverse_sqrt(s, t, base, group):
    """HF get_inverse_sqrt_schedule: ``t / max(1, W)`` for ``t < W``, then
    ``1 / sqrt((t + timescale - W) / timescale)``; ``timescale`` defaults to ``W or 10_000``."""
    w = s.warmup_steps
    timescale = s.timescale if s.timescale is not None else (w or 10_000)
    if t < w:
        return base * (float(t) / float(max(1, w)))
    return base * (1.0 / math.sqrt((t + timescale - w) / timescale))


def _warmup_cosine(s, t, base, group):
    """optax warmup_cosine_decay_schedule(init_value=0, peak_value=base, warmup_steps=W,
    decay_steps=total_steps, end_value=end_factor * base):

    * ``t < W``: ``(0 - base) * (1 - t / W) + base`` (optax linear_schedule);
    * else with ``D = total_steps - W``, ``k = min(t - W, D)``, ``alpha = end_value / base``
      (0 if base == 0): ``base * ((1 - alpha) * ((1 + cos(pi k / D)) / 2) ** exponent + alpha)``
      (optax's exponent, 1 by default).

    ``total_steps <= W`` raises ValueError (optax's cosine_decay_schedule needs D > 0).
    """
    w, total = s.warmup_steps, s.total_steps
    if total - w <= 0:
        raise ValueError("WarmupCosine: total_steps must exceed warmup_steps (as optax)")
    if t < w:
        return (0.0 - base) * (1.0 - t / w) + base
    end_value = s.end_factor * base
    alpha = 0.0 if base == 0 else end_value / base
    k = min(t - w, total - w)
    cosine = _cos_factor(k / (total - w)) ** getattr(s, "exponent", 1.0)
    return base * ((1 - alpha) * cosine + alpha)


# --------------------------------------------------------------------------------------------
# torch swa_utils, warmup from 0, optax joins and interpolation, HF warmup schedules


def _swalr(s, t, base, group):
    """torch.optim.swa_utils.SWALR, its recursion replayed from the construction step.

    Step k (``_step_count - 1``; ``max(1, k)`` when ``anneal_epochs == 0``):
    ``prev_alpha = f(clip((k - 1) / max(1, A), 0, 1))``, ``alpha = f(clip(k / max(1, A), 0, 1))``
    with ``f(x) = x`` (linear) or ``(1 - cos(pi x)) / 2`` (cos); the group's lr is inverted to
    ``L = swa_lr`` if ``prev_alpha == 1`` else ``(lr - prev_alpha * swa_lr) / (1 - prev_alpha)``
    and becomes ``swa_lr * alpha + L * (1 - alpha)``.  ``base`` is the lr at construction.
    """
    swa = _per_group(s.swa_lr, group)
    epochs = s.anneal_epochs

    def anneal(x):
        return x if s.anneal_strategy == "linear" else (1 - math.cos(math.pi * x)) / 2

    lr = base
    for k in range(t + 1):
        step = max(1, k) if epochs == 0 else k
        prev_alpha = anneal(max(0, min(1, (step - 1) / max(1, epochs))))
        alpha = anneal(max(0, min(1, step / max(1, epochs))))
        initial = swa if prev_alpha == 1 else (lr - prev_alpha * swa) / (1 - prev_alpha)
        lr = swa * alpha + initial * (1 - alpha)
    return lr


def _relative_warmup(s, t, base, group):
    """Warmup from 0 (HF's ``float(t) / float(max(1, W))`` times the lr; timm and optax ramp
    the same line): ``base * t / max(1, W)`` for ``t < W``; then the wrapped schedule at
    ``t - W`` (prefix: HF, optax join, timm warmup_prefix=True) or at ``t`` (timm's default),
    or ``base`` when there is none."""
    w = s.warmup_steps
    if t < w:
        return base * (float(t) / float(max(1, w)))
    if s.schedule is None:
        return base
    return schedule_lr(s.schedule, t - w if s.prefix else t, base, group)


def _join_schedules(s, t, base, group):
    """optax join_schedules: ``out = S_0(t)``; for each boundary b_i and schedule S_i in order,
    ``out = out if t < b_i else S_i(t - b_i)``."""
    out = schedule_lr(s.schedules[0], t, base, group)
    for boundary, child in zip(s.boundaries, s.schedules[1:], strict=True):
        if t >= boundary:
            out = schedule_lr(child, t - boundary, base, group)
    return out


def _piecewise_interpolate_value(kind, init, pairs, t):
    """optax piecewise_interpolate_schedule at count t, ``pairs`` the sorted
    (boundary, scale) items: bounds ``[0, b_1, ...]``, values the running product of
    ``[init, s_1, ...]``; in ``[b_i, b_{i+1})`` interpolate with
    ``pct = (t - b_i) / max(b_{i+1} - b_i, 1)`` (linear ``(end - start) * pct + start``,
    cosine ``end + (start - end) / 2 * (cos(pi * pct) + 1)``); from the last bound, the last
    value."""
    bounds = [0] + [b for b, _ in pairs]
    values = [init]
    for _, scale in pairs:
        values.append(values[-1] * scale)
    for i in range(len(bounds) - 1):
        if bounds[i] <= t < bounds[i + 1]:
            pct = (t - bounds[i]) / max(bounds[i + 1] - bounds[i], 1)
            start, end = values[i], values[i + 1]
            if kind == "linear":
                return (end - start) * pct + start
            if kind == "cosine":
                return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
            raise ValueError(f"PiecewiseInterpolate: unknown interpolate_type {kind!r}")
    return values[-1]


def _sorted_pairs(value):
    items = value.items() if isinstance(value, dict) else (value or ())
    return sorted((int(b), float(v)) for b, v in items)


def _piecewise_interpolate(s, t, base, group):
    """optax piecewise_interpolate_schedule from ``init_value`` (the group's lr by default)."""
    init = base if s.init_value is None else s.init_value
    return _piecewise_interpolate_value(s.interpolate_type, init,
                                        _sorted_pairs(s.boundaries_and_scales), t)


def _linear_one_cycle(s, t, base, group):
    """optax linear_onecycle_schedule: piecewise_interpolate_schedule('linear',
    peak / div_factor, {int(pct_start * T): div_factor, int(pct_final * T): 1 / div_factor,
    T: 1 / final_div_factor}) (a later equal key replaces an earlier one, as in the dict)."""
    steps = s.transition_steps
    scales = {
        int(s.pct_start * steps): s.div_factor,
        int(s.pct_final * steps): 1.0 / s.div_factor,
        steps: 1.0 / s.final_div_factor,
    }
    peak = _per_group(s.peak_value, group)
    return _piecewise_interpolate_value("linear", peak / s.div_factor, sorted(scales.items()), t)


def _hf_warmup(t, w):
    """HF's warmup factor ``float(t) / float(max(1, W))``."""
    return float(t) / float(max(1, w))


def _linear_with_warmup(s, t, base, group):
    """HF get_linear_schedule_with_warmup: warmup, then
    ``max(0.0, float(N - t) / float(max(1, N - W)))``."""
    w, n = s.warmup_steps, s.total_steps
    if t < w:
        return base * _hf_warmup(t, w)
    return base * max(0.0, float(n - t) / float(max(1, n - w)))


def _cosine_with_warmup(s, t, base, group):
    """HF get_cosine_schedule_with_warmup / get_cosine_with_min_lr_schedule_with_warmup:
    warmup, then ``progress = float(t - W) / float(max(1, N - W))``,
    ``f = 0.5 * (1 + cos(pi * num_cycles * 2 * progress))``, ``max(0, f * (1 - r) + r)``."""
    w, n = s.warmup_steps, s.total_steps
    if t < w:
        return base * _hf_warmup(t, w)
    progress = float(t - w) / float(max(1, n - w))
    factor = 0.5 * (1.0 + math.cos(math.pi * float(s.num_cycles) * 2.0 * progress))
    return base * max(0, factor * (1 - s.min_lr_rate) + s.min_lr_rate)


def _cosine_with_hard_restarts(s, t, base, group):
    """HF get_cosine_with_hard_restarts_schedule_with_warmup: warmup, then 0 once
    ``progress >= 1``, else ``max(0, 0.5 * (1 + cos(pi * ((num_cycles * progress) % 1))))``."""
    w, n = s.warmup_steps, s.total_steps
    if t < w:
        return base * _hf_warmup(t, w)
    progress = float(t - w) / float(max(1, n - w))
    if progress >= 1.0:
        return 0.0 * base
    return base * max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(s.num_cycles) * progress)
                                                              % 1.0))))


def _polynomial_with_warmup(s, t, base, group):
    """HF get_polynomial_decay_schedule_with_warmup (lr_init = optimizer.defaults['lr']):
    warmup; past N ``lr_end / lr_init``; else ``((lr_init - lr_end) * (1 - (t - W) / (N - W))
    ** power + lr_end) / lr_init``."""
    w, n = s.warmup_steps, s.total_steps
    if t < w:
        return base * _hf_warmup(t, w)
    if t > n:
        return base * (s.lr_end / s.lr_init)
    pct_remaining = 1 - (t - w) / (n - w)
    decay = (s.lr_init - s.lr_end) * pct_remaining**s.power + s.lr_end
    return base * (decay / s.lr_init)


def _cosine_warmup_with_min_lr(s, t, base, group):
    """HF get_cosine_with_min_lr_schedule_with_warmup_lr_rate, in floats: ``t < W``:
    ``(t + 1) / max(1, W)``, or ``w0 + (1 - w0) * t / max(1, W - 1)`` with a warmup_lr_rate
    w0; then ``progress = (t - W + 1) / max(1, N - W)`` and
    ``max(0, f * (1 - r) + r)``, ``f = 0.5 * (1 + cos(pi * num_cycles * 2 * progress))``."""
    step, w, n = float(t), float(s.warmup_steps), float(s.total_steps)
    if step < w:
        if s.warmup_lr_rate is None:
            return base * ((step + 1.0) / max(1.0, w))
        w0 = float(s.warmup_lr_rate)
        return base * (w0 + (1.0 - w0) * step / max(1, w - 1))
    progress = (step - w + 1.0) / max(1.0, n - w)
    factor = 0.5 * (1.0 + math.cos(math.pi * s.num_cycles * 2.0 * progress))
    return base * max(0, factor * (1 - s.min_lr_rate) + s.min_lr_rate)


# --------------------------------------------------------------------------------------------
# dispatch

_LR = {
    "StepLR": _step_lr,
    "MultiStepLR": _multi_step_lr,
    "ConstantLR": _constant_lr,
    "LinearLR": _linear_lr,
    "ExponentialLR": _exponential_lr,
    "PolynomialLR": _polynomial_lr,
    "CosineAnnealingLR": _cosine_annealing_lr,
    "SequentialLR": _sequential_lr,
    "ChainedScheduler": _chained_scheduler,
    "LambdaLR": _lambda_lr,
    "MultiplicativeLR": _multiplicative_lr,
    "CosineAnnealingWarmRestarts": _cosine_annealing_warm_restarts,
    "CyclicLR": _cyclic_lr,
    "OneCycleLR": _one_cycle_lr,
    "NoamDecay": _noam_decay,
    "ExponentialDecay": _exponential_decay,
    "NaturalExpDecay": _natural_exp_decay,
    "InverseTimeDecay": _inverse_time_decay,
    "PolynomialDecay": _polynomial_decay,
    "CosineDecay": _cosine_decay,
    "CosineDecayRestarts": _cosine_decay_restarts,
    "LinearCosineDecay": _linear_cosine_decay,
    "NoisyLinearCosineDecay": _noisy_linear_cosine_decay,
    "PiecewiseConstant": _piecewise_constant,
    "LinearWarmup": _linear_warmup,
    "WarmupStableDecay": _warmup_stable_decay,
    "InverseSqrt": _inverse_sqrt,
    "WarmupCosine": _warmup_cosine,
    "SWALR": _swalr,
    "RelativeWarmup": _relative_warmup,
    "JoinSchedules": _join_schedules,
    "PiecewiseInterpolate": _piecewise_interpolate,
    "LinearOneCycle": _linear_one_cycle,
    "LinearWithWarmup": _linear_with_warmup,
    "CosineWithWarmup": _cosine_with_warmup,
    "CosineWithHardRestarts": _cosine_with_hard_restarts,
    "PolynomialWithWarmup": _polynomial_with_warmup,
    "CosineWarmupWithMinLR": _cosine_warmup_with_min_lr,
}


def _check_t(t) -> int:
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError(f"schedule time must be a non-negative int, got {t!r}")
    return t


def schedule_lr(spec, t: int, base_lr: float, group: int = 0) -> float:
    """The lr that a param group with initial lr ``base_lr`` uses at schedule time ``t``.

    ``spec=None`` is the constant ``base_lr``.  ``group`` selects per-group values of
    sequence-valued arguments (CyclicLR/OneCycleLR ``base_lr``/``max_lr``/momenta, per-group
    lambdas).
    """
    _check_t(t)
    if spec is None:
        return float(base_lr)
    name = type(spec).__name__
    fn = _LR.get(name)
    if fn is None:
        raise ValueError(f"unknown schedule {name!r}")
    return float(fn(spec, t, float(base_lr), group))


def schedule_momentum(spec, t: int, group: int = 0) -> float | None:
    """The momentum (SGD momentum / Adam beta1) that ``spec`` imposes at ``t``, else None.

    CyclicLR / OneCycleLR with ``cycle_momentum`` cycle it as torch does.  SequentialLR and
    JoinSchedules take the active child's; ChainedScheduler the last child that cycles (torch
    applies children in order, the last write wins); LinearWarmup and RelativeWarmup the wrapped
    schedule's after the warmup.
    """
    _check_t(t)
    if spec is None:
        return None
    name = type(spec).__name__
    if name == "CyclicLR":
        return _cyclic_momentum(spec, t, group) if spec.cycle_momentum else None
    if name == "OneCycleLR":
        return _one_cycle(spec, t, group, momentum=True) if spec.cycle_momentum else None
    if name == "SequentialLR":
        i = bisect_right(list(spec.milestones), t)
        local = t - spec.milestones[i - 1] if i > 0 else t
        return schedule_momentum(spec.schedules[i], local, group)
    if name == "ChainedScheduler":
        out = None
        for child in spec.schedules:
            m = schedule_momentum(child, t, group)
            out = m if m is not None else out
        return out
    if name == "LinearWarmup":
        if t < spec.warmup_steps or isinstance(spec.schedule, (int, float)):
            return None
        return schedule_momentum(spec.schedule, t - spec.warmup_steps, group)
    if name == "RelativeWarmup":
        if t < spec.warmup_steps or spec.schedule is None:
            return None
        return schedule_momentum(spec.schedule, t - spec.warmup_steps if spec.prefix else t,
                                 group)
    if name == "JoinSchedules":
        out = schedule_momentum(spec.schedules[0], t, group)
        for boundary, child in zip(spec.boundaries, spec.schedules[1:], strict=True):
            if t >= boundary:
                out = schedule_momentum(child, t - boundary, group)
        return out
    if name not in _LR:
        raise ValueError(f"unknown schedule {name!r}")
    return None


# --------------------------------------------------------------------------------------------
# optimizers

_COUNTER_KEY = "fusedlr_schedule_step"


def _compute_dtype(p: torch.Tensor) -> torch.dtype:
    """float64 math for float64 params, float32 math (and state) for every other float dtype."""
    return torch.float64 if p.dtype == torch.float64 else torch.float32


class _ScheduledOptimizer(Optimizer):
    """Shared step loop: schedule counter, per-group lr/momentum, AMP grad_scale/found_inf.

    The k-th ``step()`` (k from 0) uses ``schedule_lr(group['schedule'], k // steps_per_epoch,
    group['lr'], group_index)``; ``group['lr']`` is never written.  The counter lives in
    ``self.state["fusedlr_schedule_step"]`` and so travels with ``state_dict()``.

    AMP: when ``grad_scale`` / ``found_inf`` attributes are set (torch.amp.GradScaler does this
    for optimizers with ``_step_supports_amp_scaling``), grads are divided by ``grad_scale``;
    when ``found_inf != 0`` nothing is updated (params, state, per-param steps, SGD first-step)
    and only the schedule counter advances, unless ``skip_schedule_on_inf``.
    No default ``grad_scale`` attribute is defined: GradScaler multiplies an existing one.
    """

    _step_supports_amp_scaling = True

    def __init__(self, params, defaults, skip_schedule_on_inf):
        super().__init__(params, defaults)
        self.skip_schedule_on_inf = bool(skip_schedule_on_inf)

    @property
    def schedule_step(self) -> int:
        """Number of step() calls the schedule has seen."""
        return int(self.state.get(_COUNTER_KEY, 0))

    def _group_lr(self, index: int, group: dict, k: int) -> float:
        t = k // group.get("steps_per_epoch", 1)
        return schedule_lr(group.get("schedule"), t, float(group["lr"]), index)

    def _group_momentum(self, index: int, group: dict, k: int) -> float | None:
        t = k // group.get("steps_per_epoch", 1)
        return schedule_momentum(group.get("schedule"), t, index)

    def get_last_lr(self) -> list[float]:
        """The lrs the next step() will use, one per param group."""
        k = self.schedule_step
        return [self._group_lr(i, g, k) for i, g in enumerate(self.param_groups)]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        k = self.schedule_step
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        overflow = found_inf is not None and float(found_inf) != 0.0
        for index, group in enumerate(self.param_groups):
            lr = self._group_lr(index, group, k)
            momentum = self._group_momentum(index, group, k)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("reference optimizers do not support sparse gradients")
                self._init_state(p, group)
                if overflow:
                    continue
                cd = _compute_dtype(p)
                grad = p.grad.detach().to(cd, copy=True)
                if grad_scale is not None:
                    grad = grad / grad_scale.to(cd)
                if group["maximize"]:
                    grad = -grad
                x = p.detach().to(cd, copy=True)
                self._update(x, grad, self.state[p], group, lr, momentum)
                p.copy_(x)
        if not (overflow and self.skip_schedule_on_inf):
            self.state[_COUNTER_KEY] = k + 1
        return loss

    def _init_state(self, p, group):  # pragma: no cover - overridden
        raise NotImplementedError

    def _update(self, x, grad, state, group, lr, momentum):  # pragma: no cover - overridden
        raise NotImplementedError


class SGD(_ScheduledOptimizer):
    """torch.optim.SGD semantics (single-tensor algorithm) with an on-device-style schedule.

    ``g = grad (/ grad_scale)``, ``g = -g`` if maximize, ``g += weight_decay * x``; with momentum
    ``mu``: ``b = g`` on the first real update (clone) else ``b = mu * b + (1 - dampening) * g``,
    ``g = g + mu * b`` if nesterov else ``b``; ``x -= lr * g``.  A schedule that cycles
    momentum replaces ``mu`` for the step.
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        momentum=0.0,
        dampening=0.0,
        weight_decay=0.0,
        nesterov=False,
        *,
        maximize=False,
        schedule=None,
        steps_per_epoch=1,
        skip_schedule_on_inf=False,
    ):
        if lr < 0.0 or momentum < 0.0 or weight_decay < 0.0:
            raise ValueError("lr, momentum and weight_decay must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            schedule=schedule,
            steps_per_epoch=steps_per_epoch,
        )
        super().__init__(params, defaults, skip_schedule_on_inf)

    def _init_state(self, p, group):
        pass  # the momentum buffer is created by the first applied update

    def _update(self, x, grad, state, group, lr, momentum):
        mu = group["momentum"] if momentum is None else momentum
        wd = group["weight_decay"]
        if wd != 0:
            grad = grad.add(x, alpha=wd)
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = grad.clone()
                state["momentum_buffer"] = buf
            else:
                buf.mul_(mu).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=mu) if group["nesterov"] else buf
        x.add_(grad, alpha=-lr)


class Adam(_ScheduledOptimizer):
    """torch.optim.Adam semantics (single-tensor algorithm) with an on-device-style schedule.

    Per param ``n += 1`` (only on applied updates); ``g = grad (/ grad_scale)``, negated if
    maximize; Adam: ``g += weight_decay * x``; AdamW: ``x *= 1 - lr * weight_decay``;
    ``m = lerp(m, g, 1 - b1)``, ``v = b2 * v + (1 - b2) * g * g``,
    amsgrad ``v_max = max(v_max, v)``;
    ``x -= lr / (1 - b1 ** n) * m / (sqrt(v or v_max) / sqrt(1 - b2 ** n) + eps)``.
    A schedule that cycles momentum replaces ``b1`` for the step (bias correction included).
    """

    _decoupled = False

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
        amsgrad=False,
        *,
        maximize=False,
        schedule=None,
        steps_per_epoch=1,
        skip_schedule_on_inf=False,
    ):
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0:
            raise ValueError("lr, eps and weight_decay must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            schedule=schedule,
            steps_per_epoch=steps_per_epoch,
        )
        super().__init__(params, defaults, skip_schedule_on_inf)

    def _init_state(self, p, group):
        state = self.state[p]
        if state:
            return
        cd = _compute_dtype(p)
        state["step"] = torch.tensor(0.0, dtype=torch.float32)
        state["exp_avg"] = torch.zeros_like(p, dtype=cd, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, dtype=cd, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(
                p, dtype=cd, memory_format=torch.preserve_format
            )

    def _update(self, x, grad, state, group, lr, momentum):
        beta1, beta2 = group["betas"]
        if momentum is not None:
            beta1 = momentum
        wd = group["weight_decay"]
        state["step"] += 1
        n = float(state["step"])
        if wd != 0:
            if self._decoupled:
                x.mul_(1 - lr * wd)
            else:
                grad = grad.add(x, alpha=wd)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**n)
        bias_correction2_sqrt = (1 - beta2**n) ** 0.5
        second = exp_avg_sq
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        denom = (second.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        x.addcdiv_(exp_avg, denom, value=-step_size)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay ``x *= 1 - lr * weight_decay``."""

    _decoupled = True

    def __init__(
        self,
        params,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
        schedule=None,
        steps_per_epoch=1,
        skip_schedule_on_inf=False,
    ):
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize=maximize,
            schedule=schedule,
            steps_per_epoch=steps_per_epoch,
            skip_schedule_on_inf=skip_schedule_on_inf,
        )


class ScheduleFree:
    """Schedule-free SGD / AdamW written from the paper (Defazio et al. 2024, "The Road Less
    Scheduled", Algorithm 1) in its own variables: the iterates ``x`` (the average, evaluated)
    and ``z`` (the base SGD / Adam sequence) are stored, the gradient is taken at
    ``y = (1 - beta) z + beta x``. With ``gamma_k`` the lr of step ``k`` (from 0)::

        gamma_k  = schedule(lr, k) * min((k + 1) / warmup_steps, 1)
        AdamW:     v = beta2 v + (1 - beta2) g**2;  d = g / (sqrt(v / (1 - beta2**(k+1))) + eps)
        SGD:       d = g
        z       <- z - gamma_k (d + weight_decay * y)
        c        = w_k / sum_{i<=k} w_i,   w_k = (k + 1)**r * max_{i<=k}(gamma_i)**weight_lr_power
        x       <- (1 - c) x + c z

    The paper's choices that the ``schedulefree`` package (and fusedlr) refine are taken as the
    package has them: the bias correction inside the square root, and the weights ``w_k``
    (the paper's ``gamma_k**2`` is ``r = 0, weight_lr_power = 2`` without the running max).
    ``train()`` puts ``y`` in the params, ``eval()`` puts ``x``; all math in float64, one param
    group, params with a grad only.
    """

    def __init__(self, params, *, lr, beta, beta2=None, eps=1e-8, weight_decay=0.0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, schedule=None):
        self.params = list(params)
        self.lr, self.beta, self.beta2, self.eps = lr, beta, beta2, eps
        self.weight_decay, self.warmup_steps = weight_decay, warmup_steps
        self.r, self.weight_lr_power, self.schedule = r, weight_lr_power, schedule
        self.k = 0
        self.gamma_max = -math.inf
        self.weight_sum = 0.0
        self.train_mode = False
        self.state: dict = {}  # id(param) -> {"x", "z", "v"} in float64

    def _y(self, st):
        return (1 - self.beta) * st["z"] + self.beta * st["x"]

    def train(self):
        for p in self.params:
            st = self.state.get(id(p))
            if st is not None:
                p.data.copy_(self._y(st))
        self.train_mode = True

    def eval(self):
        for p in self.params:
            st = self.state.get(id(p))
            if st is not None:
                p.data.copy_(st["x"])
        self.train_mode = False

    def step(self):
        assert self.train_mode, "ScheduleFree reference: call train() before step()"
        k = self.k
        gamma = self.lr if self.schedule is None else schedule_lr(self.schedule, k, self.lr)
        if k < self.warmup_steps:
            gamma *= (k + 1) / self.warmup_steps
        self.gamma_max = max(self.gamma_max, gamma)
        w = float(k + 1) ** self.r * self.gamma_max ** self.weight_lr_power
        self.weight_sum += w
        c = w / self.weight_sum if self.weight_sum != 0 else 0.0
        for p in self.params:
            if p.grad is None:
                continue
            y = p.detach().to(torch.float64)
            st = self.state.setdefault(id(p), {"x": y.clone(), "z": y.clone(),
                                               "v": torch.zeros_like(y)})
            y = self._y(st)
            g = p.grad.detach().to(torch.float64)
            if self.beta2 is not None:
                st["v"] = self.beta2 * st["v"] + (1 - self.beta2) * g * g
                g = g / ((st["v"] / (1 - self.beta2 ** (k + 1))).sqrt() + self.eps)
            st["z"] = st["z"] - gamma * (g + self.weight_decay * y)
            st["x"] = (1 - c) * st["x"] + c * st["z"]
            p.data.copy_(self._y(st))
        self.k += 1
