"""Schedules named and parametrised as HF transformers' ``get_*_schedule_with_warmup``
(``transformers/optimization.py``), in closed form, with HF's arithmetic.

Each is a factor of the group's lr, as HF's LambdaLR lambdas are; ``t`` is HF's
``current_step`` and ``W``, ``N`` its ``num_warmup_steps``, ``num_training_steps``. Every form
holds for all ``t``, past ``N`` too, where HF's lambdas are defined as well (its cosine rises
again there). ``fusedlr.schedules.from_hf`` builds them from HF's scheduler names.
"""

from __future__ import annotations

from ._base import Kind, ProgramBuilder, Schedule, check_float, check_int


class _WithWarmup(Schedule):
    """warmup_steps, total_steps: HF's num_warmup_steps, num_training_steps."""

    def _steps(self, warmup_steps, total_steps):
        owner = type(self).__name__
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0, owner=owner)
        self.total_steps = check_int("total_steps", total_steps, 0, owner=owner)


class LinearWithWarmup(_WithWarmup):
    r"""Linear warmup from 0, then linear decay to 0 at ``total_steps`` (HF
    ``get_linear_schedule_with_warmup``, the ``linear`` SchedulerType).

    .. math:: \eta_t = \eta_0 \cdot \begin{cases} t / \max(1, W) & t < W \\
              \max\left(0, \frac{N - t}{\max(1, N - W)}\right) & t \ge W \end{cases}

    >>> LinearWithWarmup(2, 6).values(8).tolist()
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    _fields = ("warmup_steps", "total_steps")

    def __init__(self, warmup_steps: int, total_steps: int):
        self._steps(warmup_steps, total_steps)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.LINEAR_WITH_WARMUP, self.warmup_steps, self.total_steps)


class CosineWithWarmup(_WithWarmup):
    r"""Linear warmup from 0, then a cosine (HF ``get_cosine_schedule_with_warmup``, and with
    ``min_lr_rate`` ``get_cosine_with_min_lr_schedule_with_warmup``).

    .. math:: \eta_t = \eta_0 \cdot \begin{cases} t / \max(1, W) & t < W \\
              \max(0, f (1 - r) + r), \ f = \frac{1 + \cos(2 \pi c p)}{2},
              \ p = \frac{t - W}{\max(1, N - W)} & t \ge W \end{cases}

    with :math:`c` = ``num_cycles`` (0.5: one half cosine down to :math:`r` at ``N``) and
    :math:`r` = ``min_lr_rate``. Past ``N`` the cosine goes on (with ``num_cycles=0.5`` it
    rises again), as HF's. HF's ``min_lr`` is ``min_lr_rate * optimizer.defaults['lr']``
    (``from_hf`` converts it).

    >>> [round(x, 12) for x in CosineWithWarmup(1, 3, min_lr_rate=0.1).values(4).tolist()]
    [0.0, 1.0, 0.55, 0.1]
    """

    _fields = ("warmup_steps", "total_steps", "num_cycles", "min_lr_rate")

    def __init__(self, warmup_steps: int, total_steps: int, num_cycles: float = 0.5,
                 min_lr_rate: float = 0.0):
        owner = "CosineWithWarmup"
        self._steps(warmup_steps, total_steps)
        self.num_cycles = check_float("num_cycles", num_cycles, 0.0, owner=owner)
        self.min_lr_rate = check_float("min_lr_rate", min_lr_rate, 0.0, 1.0, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.COSINE_WITH_WARMUP, self.warmup_steps, self.total_steps,
                      self.num_cycles, self.min_lr_rate)


class CosineWithHardRestarts(_WithWarmup):
    r"""Linear warmup from 0, then ``num_cycles`` cosines each restarting at the group's lr
    (HF ``get_cosine_with_hard_restarts_schedule_with_warmup``, ``cosine_with_restarts``).

    .. math:: \eta_t = \eta_0 \cdot \begin{cases} t / \max(1, W) & t < W \\
              \max\left(0, \frac{1 + \cos(\pi ((c p) \bmod 1))}{2}\right) & p < 1 \\
              0 & p \ge 1 \end{cases}, \quad p = \frac{t - W}{\max(1, N - W)}

    with :math:`c` = ``num_cycles``: any number of periods, fractional ones too (HF types it as
    an int but computes in floats).

    >>> [round(x, 12) for x in CosineWithHardRestarts(0, 4, num_cycles=2).values(5).tolist()]
    [1.0, 0.5, 1.0, 0.5, 0.0]
    """

    _fields = ("warmup_steps", "total_steps", "num_cycles")

    def __init__(self, warmup_steps: int, total_steps: int, num_cycles: float = 1):
        self._steps(warmup_steps, total_steps)
        self.num_cycles = check_float("num_cycles", num_cycles, 0.0,
                                      owner="CosineWithHardRestarts")

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.COSINE_WITH_HARD_RESTARTS, self.warmup_steps, self.total_steps,
                      self.num_cycles)


class PolynomialWithWarmup(_WithWarmup):
    r"""Linear warmup from 0, then polynomial decay from ``lr_init`` to ``lr_end`` (HF
    ``get_polynomial_decay_schedule_with_warmup``, ``polynomial``).

    .. math:: \eta_t = \eta_0 \cdot \begin{cases} t / \max(1, W) & t < W \\
              \frac{(l_0 - l_e) (1 - \frac{t - W}{N - W})^{P} + l_e}{l_0} & W \le t \le N \\
              l_e / l_0 & t > N \end{cases}

    :math:`l_0` = ``lr_init`` is HF's ``optimizer.defaults['lr']`` (the lr of the optimizer's
    constructor, not of each group): HF's ``lr_end`` is absolute for that lr, and every group's
    lr is scaled by the same factor. ``lr_end`` < ``lr_init`` and ``total_steps !=
    warmup_steps`` (HF divides by zero there).

    >>> PolynomialWithWarmup(0, 2, lr_init=1.0, lr_end=0.0).values(4).tolist()
    [1.0, 0.5, 0.0, 0.0]
    """

    _fields = ("warmup_steps", "total_steps", "lr_init", "lr_end", "power")

    def __init__(self, warmup_steps: int, total_steps: int, lr_init: float, lr_end: float = 1e-7,
                 power: float = 1.0):
        owner = "PolynomialWithWarmup"
        self._steps(warmup_steps, total_steps)
        if self.total_steps == self.warmup_steps:
            raise ValueError(
                f"{owner}: total_steps must differ from warmup_steps ({self.warmup_steps}): HF "
                "divides by total_steps - warmup_steps at step total_steps"
            )
        self.lr_init = check_float("lr_init", lr_init, 0.0, owner=owner, strict_min=True)
        self.lr_end = check_float("lr_end", lr_end, 0.0, owner=owner)
        if not self.lr_end < self.lr_init:
            raise ValueError(
                f"{owner}: lr_end ({self.lr_end}) must be smaller than lr_init ({self.lr_init})"
            )
        self.power = check_float("power", power, 0.0, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.POLYNOMIAL_WITH_WARMUP, self.warmup_steps, self.total_steps,
                      self.lr_init, self.lr_end, self.power)


class CosineWarmupWithMinLR(_WithWarmup):
    r"""HF ``get_cosine_with_min_lr_schedule_with_warmup_lr_rate`` (``cosine_warmup_with_min_lr``):
    :class:`CosineWithWarmup` with HF's shifted warmup and progress.

    .. math:: \eta_t = \eta_0 \cdot \begin{cases}
              (t + 1) / \max(1, W) & t < W, \text{ no warmup\_lr\_rate} \\
              w + (1 - w) \, t / \max(1, W - 1) & t < W \\
              \max(0, f (1 - r) + r), \ f = \frac{1 + \cos(2 \pi c p)}{2},
              \ p = \frac{t - W + 1}{\max(1, N - W)} & t \ge W \end{cases}

    with :math:`w` = ``warmup_lr_rate``, :math:`c` = ``num_cycles``, :math:`r` = ``min_lr_rate``.

    >>> [round(x, 12) for x in CosineWarmupWithMinLR(2, 4, min_lr_rate=0.2).values(5).tolist()]
    [0.5, 1.0, 0.6, 0.2, 0.6]
    """

    _fields = ("warmup_steps", "total_steps", "num_cycles", "min_lr_rate", "warmup_lr_rate")

    def __init__(self, warmup_steps: int, total_steps: int, num_cycles: float = 0.5,
                 min_lr_rate: float = 0.0, warmup_lr_rate: float | None = None):
        owner = "CosineWarmupWithMinLR"
        self._steps(warmup_steps, total_steps)
        self.num_cycles = check_float("num_cycles", num_cycles, 0.0, owner=owner)
        self.min_lr_rate = check_float("min_lr_rate", min_lr_rate, 0.0, 1.0, owner=owner)
        self.warmup_lr_rate = (
            None if warmup_lr_rate is None
            else check_float("warmup_lr_rate", warmup_lr_rate, 0.0, 1.0, owner=owner)
        )

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        has = self.warmup_lr_rate is not None
        return b.node(Kind.COSINE_WARMUP_WITH_MIN_LR, self.warmup_steps, self.total_steps,
                      self.num_cycles, self.min_lr_rate, float(has),
                      self.warmup_lr_rate if has else 0.0)
