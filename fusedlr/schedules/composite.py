"""Composition: run schedules one after another (``SequentialLR``) or apply them in
turn (``ChainedScheduler``), to any depth within the documented bound."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import MAX_CHAIN_DEPTH, Kind, ProgramBuilder, Schedule, check_int, check_schedule
from .torch_like import _as_seq


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
        scheds = tuple(
            check_schedule(f"schedules[{i}]", s, owner=owner)
            for i, s in enumerate(_as_seq(schedules, "schedules", owner))
        )
        if not scheds:
            raise ValueError("SequentialLR: schedules must not be empty")
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
        scheds = tuple(
            check_schedule(f"schedules[{i}]", s, owner=owner)
            for i, s in enumerate(_as_seq(schedules, "schedules", owner))
        )
        if not scheds:
            raise ValueError("ChainedScheduler: schedules must not be empty")
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
