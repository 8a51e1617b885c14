"""Composition: run schedules one after another (``SequentialLR``, optax's ``JoinSchedules``),
apply them in turn (``ChainedScheduler``) or warm one up from 0 (``RelativeWarmup``), to any
depth within the documented bound."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import (
    MAX_CHAIN_DEPTH,
    Kind,
    ProgramBuilder,
    Schedule,
    check_bool,
    check_int,
    check_schedule,
)
from .torch_like import _as_seq


def _children(schedules, owner: str) -> tuple[Schedule, ...]:
    """A composite's child schedules, checked: a non-empty sequence of specs."""
    scheds = tuple(
        check_schedule(f"schedules[{i}]", s, owner=owner)
        for i, s in enumerate(_as_seq(schedules, "schedules", owner))
    )
    if not scheds:
        raise ValueError(f"{owner}: schedules must not be empty")
    return scheds


class SequentialLR(Schedule):
    r"""Runs ``schedules[i]`` from ``milestones[i-1]`` on, each restarted at 0
    (torch ``SequentialLR``): warmup then anything.

    .. math:: \eta_t = S_i(t - m_i) \quad \text{for } m_i \le t < m_{i+1},\ m_0 = 0

    >>> from fusedlr.schedules import LinearLR, ExponentialLR
    >>> SequentialLR([LinearLR(0.5, 1.0, 2), ExponentialLR(0.5)], [2]).values(5).tolist()
    [0.5, 0.75, 1.0, 0.5, 0.25]
    """

    _fields = ("schedules", "milestones")

    def __init__(self, schedules: Sequence[Schedule], milestones: Sequence[int]):
        owner = "SequentialLR"
        scheds = _children(schedules, owner)
        ms = tuple(
            check_int(f"milestones[{i}]", m, 1, owner=owner)
            for i, m in enumerate(_as_seq(milestones, "milestones", owner))
        )
        if len(ms) != len(scheds) - 1:
            raise ValueError(
                f"SequentialLR: expected {len(scheds) - 1} milestones for {len(scheds)} schedules, "
                f"got {len(ms)}"
            )
        if any(b <= a for a, b in zip(ms, ms[1:], strict=False)):
            raise ValueError(
                f"SequentialLR: milestones must be strictly increasing, got {list(ms)}"
            )
        self.schedules = scheds
        self.milestones = ms
        if self.chain_depth() > MAX_CHAIN_DEPTH:
            raise ValueError(f"SequentialLR: ChainedScheduler nests deeper than {MAX_CHAIN_DEPTH}")

    def children(self):
        return self.schedules

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        kids = [s._encode(b, group) for s in self.schedules]
        data = b.block(list(self.milestones) + kids)
        return b.node(Kind.SEQUENTIAL, len(kids), data)


class ChainedScheduler(Schedule):
    r"""Applies every schedule in turn, each one's output being the next one's input lr
    (torch ``ChainedScheduler``): for multiplicative schedules, the product of factors.

    .. math:: \eta_t = S_n(\dots S_2(S_1(\eta_0, t), t) \dots, t)

    Chains nest at most 8 deep (``MAX_CHAIN_DEPTH``).

    >>> from fusedlr.schedules import ConstantLR, ExponentialLR
    >>> ChainedScheduler([ConstantLR(0.5, 2), ExponentialLR(0.5)]).values(3).tolist()
    [0.5, 0.25, 0.25]
    """

    _fields = ("schedules",)

    def __init__(self, schedules: Sequence[Schedule]):
        owner = "ChainedScheduler"
        scheds = _children(schedules, owner)
        self.schedules = scheds
        if self.chain_depth() > MAX_CHAIN_DEPTH:
            raise ValueError(
                f"ChainedScheduler: chains nest {self.chain_depth()} deep; at most "
                f"{MAX_CHAIN_DEPTH} are supported"
            )

    def children(self):
        return self.schedules

    def chain_depth(self) -> int:
        return 1 + super().chain_depth()

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        kids = [s._encode(b, group) for s in self.schedules]
        data = b.block(kids)
        return b.node(Kind.CHAINED, len(kids), data)


class JoinSchedules(Schedule):
    r"""Joins schedules at boundaries (optax ``join_schedules``): ``schedules[i]`` runs on
    ``t - boundaries[i-1]`` once ``t`` reaches ``boundaries[i-1]``.

    .. math:: \eta_t = S_k(t - b_k), \quad
              k = \max(\{0\} \cup \{i \ge 1 : t \ge b_i\}), \ b_0 = 0

    with :math:`b_i` = ``boundaries[i - 1]``. This is optax's chain of
    ``where(step < boundary, output, schedule(step - boundary))``: the last schedule whose
    boundary ``t`` has reached wins, so boundaries may be 0 (the first schedule never runs),
    repeat or come unsorted (a schedule whose boundary a later one's equals or precedes never
    runs). For strictly increasing boundaries >= 1 it is :class:`SequentialLR`, whose packed
    form it uses. Each schedule starts from the group's lr (optax's schedules carry their own
    values). Boundaries are step counts >= 0.

    >>> from fusedlr.schedules import ConstantLR, ExponentialLR
    >>> JoinSchedules([ConstantLR(0.5, 0), ExponentialLR(0.5)], [2]).values(5).tolist()
    [0.5, 0.5, 1.0, 0.5, 0.25]
    """

    _fields = ("schedules", "boundaries")

    def __init__(self, schedules: Sequence[Schedule], boundaries: Sequence[int]):
        owner = "JoinSchedules"
        scheds = _children(schedules, owner)
        bs = tuple(
            check_int(f"boundaries[{i}]", b, 0, owner=owner)
            for i, b in enumerate(_as_seq(boundaries, "boundaries", owner))
        )
        if len(bs) != len(scheds) - 1:
            raise ValueError(
                f"{owner}: expected {len(scheds) - 1} boundaries for {len(scheds)} schedules, "
                f"got {len(bs)}"
            )
        self.schedules = scheds
        self.boundaries = bs
        if self.chain_depth() > MAX_CHAIN_DEPTH:
            raise ValueError(f"{owner}: ChainedScheduler nests deeper than {MAX_CHAIN_DEPTH}")

    def children(self):
        return self.schedules

    def as_sequential(self) -> SequentialLR:
        """The equivalent SequentialLR: the schedules that ever run, in boundary order.

        Schedule ``i >= 1`` runs iff its boundary is below every later one's; those boundaries
        increase with ``i``. The first schedule runs iff every boundary is above 0.
        """
        pieces = []  # (boundary, schedule), scanned from the last
        lowest = None
        for b, s in zip(reversed(self.boundaries), reversed(self.schedules[1:]), strict=True):
            if lowest is None or b < lowest:
                pieces.append((b, s))
                lowest = b
        pieces.reverse()
        if not pieces or pieces[0][0] > 0:
            pieces.insert(0, (0, self.schedules[0]))
        return SequentialLR([s for _, s in pieces], [b for b, _ in pieces[1:]])

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return self.as_sequential()._encode(b, group)


class RelativeWarmup(Schedule):
    r"""Linear warmup from 0 to the group's lr, then any schedule: the warmup of HF's
    ``get_*_schedule_with_warmup``, timm's schedulers (``warmup_lr_init=0``) and optax's
    ``join_schedules([linear_schedule(0, peak, W), S], [W])``.

    .. math:: \eta_t = \begin{cases} \eta_0 \, t / \max(1, W) & t < W \\
              S(t - W) & t \ge W \text{ (prefix)} \\
              S(t) & t \ge W \text{ (prefix=False)} \end{cases}

    The ramp is relative (it reaches the group's lr, per group), unlike :class:`LinearWarmup`'s
    absolute one; it starts at 0, which torch's ``LinearLR`` refuses. ``prefix=True`` (HF,
    optax, timm's ``warmup_prefix=True``) starts ``S`` after the warmup; ``prefix=False`` (timm's
    default) runs ``S`` on ``t``, its first ``W`` steps replaced by the ramp. ``schedule=None``
    holds the group's lr after the warmup (HF's ``constant_with_warmup``). After the warmup the
    momentum is the schedule's (if it cycles momentum).

    >>> from fusedlr.schedules import ExponentialLR
    >>> RelativeWarmup(ExponentialLR(0.5), warmup_steps=2).values(5).tolist()
    [0.0, 0.5, 1.0, 0.5, 0.25]
    >>> RelativeWarmup(ExponentialLR(0.5), 2, prefix=False).values(5).tolist()
    [0.0, 0.5, 0.25, 0.125, 0.0625]
    """

    _fields = ("schedule", "warmup_steps", "prefix")

    def __init__(self, schedule: Schedule | None, warmup_steps: int, prefix: bool = True):
        owner = "RelativeWarmup"
        if schedule is not None:
            schedule = check_schedule("schedule", schedule, owner=owner)
        self.schedule = schedule
        self.warmup_steps = check_int("warmup_steps", warmup_steps, 0, owner=owner)
        self.prefix = check_bool("prefix", prefix, owner=owner)
        if self.chain_depth() > MAX_CHAIN_DEPTH:
            raise ValueError(f"{owner}: ChainedScheduler nests deeper than {MAX_CHAIN_DEPTH}")

    def children(self):
        return () if self.schedule is None else (self.schedule,)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        child = -1 if self.schedule is None else self.schedule._encode(b, group)
        return b.node(Kind.RELATIVE_WARMUP, self.warmup_steps, child, float(self.prefix))
