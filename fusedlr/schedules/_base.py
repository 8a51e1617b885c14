"""Schedule specs: declarative data that packs into a float64 program.

A spec is a plain object named after the schedule it implements, whose
attributes are its constructor arguments. ``ProgramBuilder`` packs specs into the
flat program that ``csrc/include/schedule.h`` evaluates, on the host for
``values()`` and on the device inside the optimizer step.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

NODE_WIDTH = 16  # doubles per node; csrc/include/schedule.h kNodeWidth
MAX_CHAIN_DEPTH = 8  # nested ChainedScheduler levels; schedule.h kMaxChainDepth
MAX_PROGRAM_DOUBLES = 1 << 24  # 128 MiB of float64: the device budget of one optimizer


class Kind:
    """Node kinds; keep in sync with ``ScheduleKind`` in csrc/include/schedule.h."""

    CONSTANT = 0
    STEP = 1
    MULTISTEP = 2
    CONSTANT_LR = 3
    LINEAR_LR = 4
    EXPONENTIAL = 5
    POLYNOMIAL = 6
    COSINE_ANNEALING = 7
    SEQUENTIAL = 8
    CHAINED = 9
    NOAM = 10
    TABLE = 11
    # the catalog (csrc/include/schedule_catalog.h, ``CatalogKind``)
    COSINE_WARM_RESTARTS = 12
    CYCLIC = 13
    ONE_CYCLE = 14
    EXPONENTIAL_DECAY = 15
    NATURAL_EXP_DECAY = 16
    INVERSE_TIME_DECAY = 17
    POLYNOMIAL_DECAY = 18
    COSINE_DECAY = 19
    COSINE_DECAY_RESTARTS = 20
    LINEAR_COSINE_DECAY = 21
    NOISY_LINEAR_COSINE_DECAY = 22
    PIECEWISE_CONSTANT = 23
    LINEAR_WARMUP = 24
    WARMUP_STABLE_DECAY = 25
    INVERSE_SQRT = 26
    WARMUP_COSINE = 27
    # issue 13 (csrc/include/schedule_peers.h); JoinSchedules packs into SEQUENTIAL nodes and
    # LinearOneCycle into PIECEWISE_INTERPOLATE
    SWALR = 28
    RELATIVE_WARMUP = 29
    PIECEWISE_INTERPOLATE = 30
    LINEAR_WITH_WARMUP = 31
    COSINE_WITH_WARMUP = 32
    COSINE_WITH_HARD_RESTARTS = 33
    POLYNOMIAL_WITH_WARMUP = 34
    COSINE_WARMUP_WITH_MIN_LR = 35


class ProgramBuilder:
    """Appends nodes and data blocks to a flat list of doubles."""

    def __init__(self) -> None:
        self.data: list[float] = []

    def node(self, kind: int, *params: float) -> int:
        if len(params) > NODE_WIDTH - 1:
            raise ValueError(f"a schedule node holds at most {NODE_WIDTH - 1} parameters")
        offset = len(self.data)
        self.data.append(float(kind))
        self.data.extend(float(p) for p in params)
        self.data.extend([0.0] * (NODE_WIDTH - 1 - len(params)))
        return offset

    def block(self, values: Sequence[float]) -> int:
        offset = len(self.data)
        self.data.extend(float(v) for v in values)
        return offset

    def add(self, spec: Schedule | None, group: int = 0) -> int:
        """Encodes `spec` for param group `group`; -1 for no schedule."""
        if spec is None:
            return -1
        root = spec._encode(self, group)
        if len(self.data) > MAX_PROGRAM_DOUBLES:
            raise ValueError(
                f"schedule programs need {len(self.data)} doubles, more than the device budget of "
                f"{MAX_PROGRAM_DOUBLES}; use a shorter total_steps for tabulated schedules"
            )
        return root

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        data = self.data if self.data else [0.0]
        return torch.tensor(data, dtype=torch.float64, device=device)


class Schedule:
    """Base class of every schedule spec.

    Subclasses set ``_fields`` (constructor argument names, in order), validate in
    ``__init__`` and implement ``_encode``.
    """

    _fields: tuple[str, ...] = ()
    #: schedules whose lrs are absolute (CyclicLR, OneCycleLR, ...) ignore the group's lr
    absolute: bool = False

    def _encode(self, builder: ProgramBuilder, group: int) -> int:  # pragma: no cover
        raise NotImplementedError

    # -- introspection -------------------------------------------------------------------------
    def args(self) -> dict:
        return {f: getattr(self, f) for f in self._fields}

    def children(self) -> tuple[Schedule, ...]:
        return ()

    def cycles_momentum(self) -> bool:
        """Whether the schedule sets momentum (SGD) / beta1 (Adam) each step."""
        return any(c.cycles_momentum() for c in self.children())

    def chain_depth(self) -> int:
        return max((c.chain_depth() for c in self.children()), default=0)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in self.args().items())
        return f"{type(self).__name__}({inner})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args() == other.args()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))

    # -- evaluation on the host, through the same C++ as the kernels -----------------------------
    def program(self, group: int = 0) -> tuple[torch.Tensor, int]:
        builder = ProgramBuilder()
        root = builder.add(self, group)
        return builder.tensor(), root

    def _rows(self, n: int, base_lr: float, group: int, start: int) -> torch.Tensor:
        from fusedlr import ops

        n = check_int("n", n, 0, owner="values")
        start = check_int("start", start, 0, owner="values")
        base_lr = check_float("base_lr", base_lr, 0.0, owner="values")
        program, root = self.program(group)
        return ops.schedule_values(program, root, base_lr, start, n)

    def values(self, n: int, base_lr: float = 1.0, *, group: int = 0, start: int = 0):
        """The lrs at schedule times start .. start+n-1 as a float64 tensor.

        Computed by the C++ function the kernels call, so it is exactly what
        training uses (for a group whose lr is ``base_lr``).
        """
        return self._rows(n, base_lr, group, start)[:, 0].clone()

    def momentum_values(self, n: int, *, group: int = 0, start: int = 0):
        """Momentum / beta1 the schedule imposes at each time (NaN where it imposes none)."""
        return self._rows(n, 1.0, group, start)[:, 1].clone()

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A picklable description (nested dicts, lists and numbers) for state_dict."""
        args = {k: _to_plain(v) for k, v in self.args().items()}
        return {"name": type(self).__name__, "args": args}


def _short(v):
    if isinstance(v, tuple) and len(v) > 8:
        return f"({', '.join(map(repr, v[:3]))}, ... {len(v)} values)"
    return repr(v)


def _to_plain(v):
    if isinstance(v, Schedule):
        return v.to_dict()
    if isinstance(v, (tuple, list)):
        return [_to_plain(x) for x in v]
    if callable(v):
        raise TypeError("callables are tabulated before serialization")
    return v


def from_dict(d: dict) -> Schedule:
    """Rebuilds a spec from ``Schedule.to_dict()`` output."""
    from fusedlr import schedules

    if not isinstance(d, dict) or "name" not in d or "args" not in d:
        raise ValueError(f"not a serialized schedule: {d!r}")
    cls = getattr(schedules, d["name"], None)
    if not (isinstance(cls, type) and issubclass(cls, Schedule)):
        raise ValueError(f"unknown schedule {d['name']!r}")
    return cls._from_plain_args(d["args"])


def _from_plain(v):
    if isinstance(v, dict) and "name" in v and "args" in v:
        return from_dict(v)
    if isinstance(v, list):
        return tuple(_from_plain(x) for x in v)
    return v


def _from_plain_args_default(cls, args: dict) -> Schedule:
    return cls(**{k: _from_plain(v) for k, v in args.items()})


Schedule._from_plain_args = classmethod(_from_plain_args_default)


# -- validation helpers ----------------------------------------------------------------------------
def _where(owner: str | None, name: str) -> str:
    return f"{owner}: {name}" if owner else name


def check_int(name, value, minimum=None, maximum=None, *, owner=None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise TypeError(f"{_where(owner, name)} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{_where(owner, name)} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{_where(owner, name)} must be <= {maximum}, got {value}")
    return value


def check_float(
    name, value, minimum=None, maximum=None, *, owner=None, strict_min=False, strict_max=False
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_where(owner, name)} must be a number, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{_where(owner, name)} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        op = ">" if strict_min else ">="
        raise ValueError(f"{_where(owner, name)} must be {op} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if strict_max else value > maximum):
        op = "<" if strict_max else "<="
        raise ValueError(f"{_where(owner, name)} must be {op} {maximum}, got {value}")
    return value


def check_choice(name, value, choices, *, owner=None):
    try:
        ok = value in choices
    except TypeError:  # unhashable
        ok = False
    if not ok:
        raise ValueError(f"{_where(owner, name)} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_schedule(name, value, *, owner=None) -> Schedule:
    if not isinstance(value, Schedule):
        raise TypeError(
            f"{_where(owner, name)} must be a fusedlr.schedules spec, got {type(value).__name__}"
        )
    return value


def per_group(value, group: int, name: str, owner: str) -> float:
    """The value for param group `group` of a scalar-or-one-per-group argument."""
    if isinstance(value, tuple):
        if group >= len(value):
            raise ValueError(
                f"{owner}: {name} has {len(value)} values but param group {group} needs one"
            )
        return value[group]
    return value


def check_per_group_float(name, value, minimum=None, *, owner=None, strict_min=False):
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{_where(owner, name)} must not be empty")
        return tuple(
            check_float(f"{name}[{i}]", v, minimum, owner=owner, strict_min=strict_min)
            for i, v in enumerate(value)
        )
    return check_float(name, value, minimum, owner=owner, strict_min=strict_min)


def check_bool(name, value, *, owner=None) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{_where(owner, name)} must be a bool, got {value!r}")
    return value


def tabulate(fn, xs, name: str, owner: str) -> tuple[float, ...]:
    """``fn(x)`` for each x as finite floats (a callable argument turned into a device table)."""
    out = []
    for x in xs:
        v = fn(x)
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: {name}({x}) returned {v!r}, not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{owner}: {name}({x}) returned {v}, not a finite number")
        out.append(v)
    return tuple(out)
