"""Schedules named and parametrised as TensorFlow/Keras (``keras.optimizers.schedules``, TF1
``tf.compat.v1.train.*_decay``) and Paddle (``paddle.optimizer.lr``), in closed form.

``t`` is the framework's ``step`` (Keras) / ``last_epoch`` (Paddle); the group's lr plays the
role of ``initial_learning_rate`` (Keras) / ``learning_rate`` (Paddle). Where TF and Paddle
disagree, the schedule follows the framework whose name it carries, and says so.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from ._base import (
    Kind,
    ProgramBuilder,
    Schedule,
    check_bool,
    check_float,
    check_int,
    check_schedule,
)
from .torch_like import _as_seq

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


class _Decay(Schedule):
    """Shared arguments of the exponential / natural-exp / inverse-time decays."""

    _fields = ("decay_steps", "decay_rate", "staircase")
    _kind = -1
    _strict_rate = False

    def __init__(self, decay_steps: int, decay_rate: float, staircase: bool = False):
        owner = type(self).__name__
        self.decay_steps = check_int("decay_steps", decay_steps, 1, owner=owner)
        self.decay_rate = check_float("decay_rate", decay_rate, 0.0, owner=owner,
                                      strict_min=self._strict_rate)
        self.staircase = check_bool("staircase", staircase, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(self._kind, self.decay_steps, self.decay_rate, float(self.staircase))


class ExponentialDecay(_Decay):
    r"""Exponential decay (Keras ``ExponentialDecay``; optax ``exponential_decay`` with its
    ``transition_begin`` and ``end_value``).

    .. math:: \eta_t = \operatorname{clip}\left(\begin{cases} \eta_0 & c \le 0 \\
              \eta_0 \cdot \text{decay\_rate}^{p} & c > 0 \end{cases}\right), \quad
              c = t - \text{transition\_begin}, \ p = c / \text{decay\_steps}
              \ (\lfloor p \rfloor \text{ if staircase})

    ``decay_steps`` is optax's ``transition_steps``. With an ``end_value`` (absolute, as optax's)
    the lr is clipped to :math:`\max(\cdot, \text{end\_value})` when ``decay_rate < 1`` and to
    :math:`\min(\cdot, \text{end\_value})` otherwise, at every step (the hold before
    ``transition_begin`` too), as optax. Without them it is Keras' schedule; Paddle's
    ``ExponentialDecay(gamma)`` is this with ``decay_steps=1``.

    >>> ExponentialDecay(decay_steps=2, decay_rate=0.25).values(3).tolist()
    [1.0, 0.5, 0.25]
    >>> ExponentialDecay(1, 0.5, transition_begin=2, end_value=0.2).values(6).tolist()
    [1.0, 1.0, 1.0, 0.5, 0.25, 0.2]
    """

    _fields = ("decay_steps", "decay_rate", "staircase", "transition_begin", "end_value")

    def __init__(self, decay_steps: int, decay_rate: float, staircase: bool = False,
                 transition_begin: int = 0, end_value: float | None = None):
        owner = "ExponentialDecay"
        self.decay_steps = check_int("decay_steps", decay_steps, 1, owner=owner)
        self.decay_rate = check_float("decay_rate", decay_rate, 0.0, owner=owner, strict_min=True)
        self.staircase = check_bool("staircase", staircase, owner=owner)
        self.transition_begin = check_int("transition_begin", transition_begin, 0, owner=owner)
        self.end_value = (None if end_value is None
                          else check_float("end_value", end_value, 0.0, owner=owner))

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        has_end = self.end_value is not None
        return b.node(Kind.EXPONENTIAL_DECAY, self.decay_steps, self.decay_rate,
                      float(self.staircase), self.transition_begin, float(has_end),
                      self.end_value if has_end else 0.0)


class NaturalExpDecay(_Decay):
    r"""Natural exponential decay (TF1 ``natural_exp_decay``).

    .. math:: \eta_t = \eta_0 \, e^{-\text{decay\_rate} \cdot p}, \quad
              p = t / \text{decay\_steps} \ (\lfloor p \rfloor \text{ if staircase})

    Frameworks disagree: Paddle's ``NaturalExpDecay(gamma)`` is :math:`\eta_0 e^{-\gamma t}`
    (no ``decay_steps``, no staircase), i.e. this with ``decay_steps=1``. TF's form is followed.

    >>> [round(x, 12) for x in NaturalExpDecay(decay_steps=2, decay_rate=1.0,
    ...                                        staircase=True).values(4).tolist()]
    [1.0, 1.0, 0.367879441171, 0.367879441171]
    """

    _kind = Kind.NATURAL_EXP_DECAY


class InverseTimeDecay(_Decay):
    r"""Inverse time decay (Keras ``InverseTimeDecay``).

    .. math:: \eta_t = \frac{\eta_0}{1 + \text{decay\_rate} \cdot p}, \quad
              p = t / \text{decay\_steps} \ (\lfloor p \rfloor \text{ if staircase})

    Paddle's ``InverseTimeDecay(gamma)`` is this with ``decay_steps=1``.

    >>> InverseTimeDecay(decay_steps=1, decay_rate=1.0).values(4).tolist()
    [1.0, 0.5, 0.3333333333333333, 0.25]
    """

    _kind = Kind.INVERSE_TIME_DECAY


class PolynomialDecay(Schedule):
    r"""Polynomial decay to ``end_learning_rate`` (Keras ``PolynomialDecay``).

    .. math:: \eta_t = (\eta_0 - \eta_{end}) \left(1 - \frac{s}{H}\right)^{\text{power}}
              + \eta_{end}

    Without ``cycle``: :math:`s = \min(t, D)`, :math:`H = D` (then ``end_learning_rate``
    holds). With ``cycle`` (TF's convention; Paddle agrees): :math:`s = t`,
    :math:`H = D \lceil t / D \rceil` (:math:`H = D` at t = 0), so at each multiple of
    :math:`D` the lr is ``end_learning_rate`` and the next step restarts a longer, shallower
    decay. ``end_learning_rate`` is absolute (torch's ``PolynomialLR`` has no end value and no
    cycle).

    >>> PolynomialDecay(decay_steps=2, end_learning_rate=0.0).values(4).tolist()
    [1.0, 0.5, 0.0, 0.0]
    >>> PolynomialDecay(decay_steps=2, end_learning_rate=0.0, cycle=True).values(4).tolist()
    [1.0, 0.5, 0.0, 0.25]
    """

    _fields = ("decay_steps", "end_learning_rate", "power", "cycle")

    def __init__(self, decay_steps: int, end_learning_rate: float = 1e-4, power: float = 1.0,
                 cycle: bool = False):
        owner = "PolynomialDecay"
        self.decay_steps = check_int("decay_steps", decay_steps, 1, owner=owner)
        self.end_learning_rate = check_float("end_learning_rate", end_learning_rate, 0.0,
                                             owner=owner)
        self.power = check_float("power", power, 0.0, owner=owner)
        self.cycle = check_bool("cycle", cycle, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.POLYNOMIAL_DECAY, self.decay_steps, self.end_learning_rate, self.power,
                      float(self.cycle))


class CosineDecay(Schedule):
    r"""Cosine decay to ``alpha`` times the initial lr (Keras ``CosineDecay``, no warmup; optax
    ``cosine_decay_schedule`` with its ``exponent``).

    .. math:: \eta_t = \eta_0 \left((1 - \alpha) \left(\frac{1 + \cos(\pi s / D)}{2}
              \right)^{e} + \alpha\right), \quad s = \min(t, D)

    with :math:`e` = ``exponent`` (1: Keras'). Past ``decay_steps`` it holds
    :math:`\alpha \eta_0` (torch's ``CosineAnnealingLR`` rises again instead).

    >>> [round(x, 12) for x in CosineDecay(decay_steps=2, alpha=0.1).values(4).tolist()]
    [1.0, 0.55, 0.1, 0.1]
    >>> [round(x, 12) for x in CosineDecay(decay_steps=2, exponent=2.0).values(3).tolist()]
    [1.0, 0.25, 0.0]
    """

    _fields = ("decay_steps", "alpha", "exponent")

    def __init__(self, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0):
        self.decay_steps = check_int("decay_steps", decay_steps, 1, owner="CosineDecay")
        self.alpha = check_float("alpha", alpha, 0.0, 1.0, owner="CosineDecay")
        self.exponent = check_float("exponent", exponent, 0.0, owner="CosineDecay",
                                    strict_min=True)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        # exponent 1 packs as the old node (no flag): pow(c, 1) is not bit-exact everywhere
        given = self.exponent != 1.0
        return b.node(Kind.COSINE_DECAY, self.decay_steps, self.alpha,
                      self.exponent if given else 0.0, float(given))


class CosineDecayRestarts(Schedule):
    r"""Cosine decay with restarts, SGDR (Keras ``CosineDecayRestarts``).

    With :math:`c = t / \text{first\_decay\_steps}`, period :math:`i` covers
    :math:`S_i \le c < S_{i+1}`, :math:`S_i = (1 - t_{mul}^i) / (1 - t_{mul})`
    (:math:`S_i = i` if :math:`t_{mul} = 1`), and :math:`f = (c - S_i) / t_{mul}^i`:

    .. math:: \eta_t = \eta_0 \left((1 - \alpha)\, m_{mul}^i \frac{1 + \cos(\pi f)}{2}
              + \alpha\right)

    Deliberate deviations: the period index :math:`i` is found exactly (Keras'
    ``floor(log(1 - c (1 - t_mul)) / log(t_mul))`` can round down at an exact restart step and
    then gives :math:`\alpha \eta_0` instead of the restart value); ``t_mul`` must be >= 1
    (with ``t_mul < 1`` the periods shrink to a finite total after which Keras yields NaN).

    >>> [round(x, 12) for x in CosineDecayRestarts(2, t_mul=2.0, m_mul=0.5).values(7).tolist()]
    [1.0, 0.5, 0.5, 0.426776695297, 0.25, 0.073223304703, 0.25]
    """

    _fields = ("first_decay_steps", "t_mul", "m_mul", "alpha")

    def __init__(self, first_decay_steps: int, t_mul: float = 2.0, m_mul: float = 1.0,
                 alpha: float = 0.0):
        owner = "CosineDecayRestarts"
        self.first_decay_steps = check_int("first_decay_steps", first_decay_steps, 1, owner=owner)
        self.t_mul = check_float("t_mul", t_mul, 1.0, owner=owner)
        self.m_mul = check_float("m_mul", m_mul, 0.0, owner=owner)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.COSINE_DECAY_RESTARTS, self.first_decay_steps, self.t_mul, self.m_mul,
                      self.alpha)


class LinearCosineDecay(Schedule):
    r"""Linear cosine decay (TF1 ``linear_cosine_decay``).

    .. math:: \eta_t = \eta_0 \left((\alpha + \ell) \, c + \beta\right), \quad
              \ell = \frac{D - s}{D}, \quad c = \frac{1 + \cos(2 \pi n s / D)}{2},
              \quad s = \min(t, D)

    with ``n = num_periods``; past ``decay_steps`` it holds :math:`\eta_0 (\alpha c_D + \beta)`.

    >>> [round(x, 12) for x in LinearCosineDecay(decay_steps=2, beta=0.0).values(3).tolist()]
    [1.0, 0.25, 0.0]
    """

    _fields = ("decay_steps", "num_periods", "alpha", "beta")

    def __init__(self, decay_steps: int, num_periods: float = 0.5, alpha: float = 0.0,
                 beta: float = 0.001):
        owner = type(self).__name__
        self.decay_steps = check_int("decay_steps", decay_steps, 1, owner=owner)
        self.num_periods = check_float("num_periods", num_periods, 0.0, owner=owner)
        self.alpha = check_float("alpha", alpha, 0.0, owner=owner)
        self.beta = check_float("beta", beta, 0.0, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.LINEAR_COSINE_DECAY, self.decay_steps, self.num_periods, self.alpha,
                      self.beta)


class NoisyLinearCosineDecay(Schedule):
    r"""Noisy linear cosine decay (TF1 ``noisy_linear_cosine_decay``).

    :class:`LinearCosineDecay` with :math:`\ell` replaced by

    .. math:: \ell + \sqrt{\frac{v_0}{(1 + s)^{\text{variance\_decay}}}} \; z(\text{seed}, t),
              \quad s = \min(t, D)

    where TF draws :math:`z \sim N(0, 1)` afresh each step. Deliberate deviation: here
    :math:`z` is a deterministic counter-based normal of ``(seed, t)``
    (``fusedlr.reference.noise_normal``: SplitMix64 + Box-Muller), so a resumed run or a
    replayed CUDA graph reproduces the same noise. As TF, the variance uses the clamped
    :math:`s`; the noise keeps changing with ``t`` past ``decay_steps``.

    >>> NoisyLinearCosineDecay(decay_steps=10, initial_variance=0.0).values(2).tolist()
    [1.001, 0.8789754323328192]
    """

    _fields = ("decay_steps", "initial_variance", "variance_decay", "num_periods", "alpha",
               "beta", "seed")

    def __init__(self, decay_steps: int, initial_variance: float = 1.0,
                 variance_decay: float = 0.55, num_periods: float = 0.5, alpha: float = 0.0,
                 beta: float = 0.001, seed: int = 0):
        owner = "NoisyLinearCosineDecay"
        self.decay_steps = check_int("decay_steps", decay_steps, 1, owner=owner)
        self.initial_variance = check_float("initial_variance", initial_variance, 0.0,
                                            owner=owner)
        self.variance_decay = check_float("variance_decay", variance_decay, 0.0, owner=owner)
        self.num_periods = check_float("num_periods", num_periods, 0.0, owner=owner)
        self.alpha = check_float("alpha", alpha, 0.0, owner=owner)
        self.beta = check_float("beta", beta, 0.0, owner=owner)
        self.seed = check_int("seed", seed, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        x0 = (self.seed * _GOLDEN) & _MASK64  # the noise counter at t = 0, as two exact halves
        return b.node(Kind.NOISY_LINEAR_COSINE_DECAY, self.decay_steps, self.initial_variance,
                      self.variance_decay, self.num_periods, self.alpha, self.beta, x0 >> 32,
                      x0 & 0xFFFFFFFF)


class _CallableValues(tuple):
    """Keras' ``values`` argument (a tuple of lrs) that, when called, is ``Schedule.values``:
    ``spec.values[i]`` is the i-th lr and ``spec.values(n)`` previews n steps, as for every
    schedule."""

    def __call__(self, n: int, base_lr: float = 1.0, *, group: int = 0, start: int = 0):
        return Schedule.values(self._owner, n, base_lr, group=group, start=start)


class PiecewiseConstant(Schedule):
    r"""Piecewise constant absolute lrs (Keras ``PiecewiseConstantDecay``; the group's lr is
    ignored).

    .. math:: \eta_t = v_k, \quad k = |\{i : b_i < t\}|

    so ``values[0]`` for :math:`t \le b_0`, ``values[i]`` for :math:`b_{i-1} < t \le b_i`,
    ``values[-1]`` past the last boundary. ``spec.values`` is the tuple of lrs and, called,
    the usual preview ``spec.values(n)``. Frameworks disagree at the boundary: Paddle's
    ``PiecewiseDecay`` switches one step earlier (:math:`t < b_0` gives ``values[0]``); to get
    Paddle's behaviour pass ``b - 1``. Boundaries are strictly increasing step counts.

    >>> PiecewiseConstant([1, 3], [1.0, 0.5, 0.1]).values(5).tolist()
    [1.0, 1.0, 0.5, 0.5, 0.1]
    """

    _fields = ("boundaries", "values")
    absolute = True

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        owner = "PiecewiseConstant"
        bs = tuple(check_int(f"boundaries[{i}]", b, 0, owner=owner)
                   for i, b in enumerate(_as_seq(boundaries, "boundaries", owner)))
        if any(b <= a for a, b in zip(bs, bs[1:], strict=False)):
            raise ValueError(f"{owner}: boundaries must be strictly increasing, got {list(bs)}")
        vs = tuple(check_float(f"values[{i}]", v, 0.0, owner=owner)
                   for i, v in enumerate(_as_seq(values, "values", owner)))
        if len(vs) != len(bs) + 1:
            raise ValueError(
                f"{owner}: values needs len(boundaries) + 1 = {len(bs) + 1} entries, got {len(vs)}"
            )
        self.boundaries = bs
        self.values = _CallableValues(vs)
        self.values._owner = self

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        data = b.block(self.boundaries + tuple(self.values))
        return b.node(Kind.PIECEWISE_CONSTANT, data, len(self.boundaries))


class LinearWarmup(Schedule):
    r"""Linear warmup, then another schedule (Paddle ``LinearWarmup``).

    .. math:: \eta_t = \begin{cases}
              (\text{end\_lr} - \text{start\_lr}) \, t / W + \text{start\_lr} & t < W \\
              S(t - W) & t \ge W \end{cases}

    ``start_lr`` / ``end_lr`` are absolute; the wrapped schedule ``S`` restarts at 0 after the
    warmup and starts from the group's lr. ``schedule`` may also be a number: a constant
    absolute lr after the warmup (Paddle's float ``learning_rate``). After the warmup the
    momentum is the wrapped schedule's (if it cycles momentum).

    >>> from fusedlr.schedules import ExponentialLR
    >>> warm = LinearWarmup(ExponentialLR(0.5), warmup_steps=2, start_lr=0.0, end_lr=1.0)
    >>> warm.values(4).tolist()
    [0.0, 0.5, 1.0, 0.5]
    """

    _fields = ("schedule", "warmup_steps", "start_lr", "end_lr")

    def __init__(self, schedule, warmup_steps: int, start_lr: float, end_lr: float):
        owner = "LinearWarmup"
        if isinstance(schedule, numbers.Real) and not isinstance(schedule, bool):
            schedule = check_float("schedule", schedule, 0.0, owner=owner)
        else:
            schedule = check_schedule("schedule", schedule, owner=owner)
        self.schedule = schedule
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 1, owner=owner)
        self.start_lr = check_float("start_lr", start_lr, 0.0, owner=owner)
        self.end_lr = check_float("end_lr", end_lr, 0.0, owner=owner)

    def children(self):
        return (self.schedule,) if isinstance(self.schedule, Schedule) else ()

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        if isinstance(self.schedule, Schedule):
            child, constant = self.schedule._encode(b, group), 0.0
        else:
            child, constant = -1, self.schedule
        return b.node(Kind.LINEAR_WARMUP, self.warmup_steps, self.start_lr, self.end_lr, child,
                      constant)
