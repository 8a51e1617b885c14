"""Arbitrary Python callables, tabulated once into a device table."""

from __future__ import annotations

import math

from ._base import Kind, ProgramBuilder, Schedule, check_int

MAX_TABLE_STEPS = 1 << 22  # 32 MiB of float64 per table


def _check_total(total_steps, owner):
    if total_steps is None:
        raise ValueError(
            f"{owner}: total_steps is required: a Python function is tabulated once over "
            "total_steps values (past the end the last value holds)"
        )
    return check_int("total_steps", total_steps, 1, MAX_TABLE_STEPS, owner=owner)


def _tabulate(fn, n, owner, start=0):
    table = []
    for t in range(start, n):
        v = fn(t)
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: lr_lambda({t}) returned {v!r}, not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{owner}: lr_lambda({t}) returned {v}, not a finite number")
        table.append(v)
    return tuple(table)


class LambdaLR(Schedule):
    r"""The group's lr times ``lr_lambda(t)`` (torch ``LambdaLR``). The function is
    tabulated at construction for t < total_steps; past the end the last value holds.
    ``lr_lambda`` may also be a sequence of values (what state_dict stores).

    .. math:: \eta_t = \eta_0 \cdot \lambda(\min(t, N - 1))

    >>> LambdaLR(lambda t: 1 / (t + 1), total_steps=3).values(4).tolist()
    [1.0, 0.5, 0.3333333333333333, 0.3333333333333333]
    """

    _fields = ("lr_lambda", "total_steps")

    def __init__(self, lr_lambda, total_steps: int | None = None):
        owner = type(self).__name__
        if callable(lr_lambda):
            n = _check_total(total_steps, owner)
            self.table = self._tabulate(lr_lambda, n, owner)
        elif isinstance(lr_lambda, (list, tuple)) and lr_lambda:
            self.table = _tabulate(lambda t: lr_lambda[t], len(lr_lambda), owner)
            if total_steps is not None and check_int(
                "total_steps", total_steps, 1, owner=owner
            ) != len(self.table):
                raise ValueError(f"{owner}: total_steps ({total_steps}) != len(lr_lambda)")
        else:
            raise TypeError(
                f"{owner}: lr_lambda must be a callable or a non-empty sequence of numbers"
            )
        self.total_steps = len(self.table)

    @staticmethod
    def _tabulate(fn, n, owner):
        return _tabulate(fn, n, owner)

    @property
    def lr_lambda(self):
        return self.table

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        data = b.block(self.table)
        return b.node(Kind.TABLE, data, len(self.table))


class MultiplicativeLR(LambdaLR):
    r"""Multiplies the lr by ``lr_lambda(t)`` at every step t >= 1 (torch ``MultiplicativeLR``),
    tabulated as the running product over t < total_steps; past the end it holds.

    .. math:: \eta_t = \eta_0 \prod_{i=1}^{\min(t, N-1)} \lambda(i)

    >>> MultiplicativeLR(lambda t: 0.5, total_steps=3).values(4).tolist()
    [1.0, 0.5, 0.25, 0.25]

    A sequence given as ``lr_lambda`` is taken as the already-multiplied table.
    """

    @staticmethod
    def _tabulate(fn, n, owner):
        factors = _tabulate(fn, n, owner, start=1)
        out, acc = [1.0], 1.0
        for f in factors:
            acc *= f
            out.append(acc)
        return tuple(out)
