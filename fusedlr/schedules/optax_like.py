"""Schedules named and parametrised as optax's (``optax.schedules``), in closed form: piecewise
interpolation between scaled values and the linear one-cycle built on it.

``t`` is optax's ``count``. A schedule whose optax form takes an ``init_value`` / ``peak_value``
starts from the group's lr unless that value is given (then it is absolute, as in optax).
"""

from __future__ import annotations

from collections.abc import Mapping

from ._base import (
    Kind,
    ProgramBuilder,
    Schedule,
    check_choice,
    check_float,
    check_int,
    check_per_group_float,
    per_group,
)
from .torch_like import _as_seq

_INTERPOLATE = {"linear": 0, "cosine": 1}


def _pairs(value, owner: str) -> tuple[tuple[int, float], ...]:
    """``boundaries_and_scales`` (a dict, pairs or None) as sorted ``(boundary, scale)`` pairs."""
    name = "boundaries_and_scales"
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        items = list(_as_seq(value, name, owner))
    pairs = []
    for i, item in enumerate(items):
        if isinstance(item, (str, bytes)) or not hasattr(item, "__len__") or len(item) != 2:
            raise TypeError(f"{owner}: {name}[{i}] must be a (boundary, scale) pair, got {item!r}")
        b = check_int(f"{name}[{i}] boundary", item[0], 0, owner=owner)
        s = check_float(f"{name}[{i}] scale", item[1], 0.0, owner=owner)
        pairs.append((b, s))
    pairs.sort()
    bounds = [b for b, _ in pairs]
    if len(set(bounds)) != len(bounds):
        raise ValueError(f"{owner}: {name} repeats a boundary: {bounds}")
    return tuple(pairs)


def _encode_piecewise(b: ProgramBuilder, kind_type: int, pairs, init) -> int:
    data = b.block([p[0] for p in pairs] + [p[1] for p in pairs])
    has_init = init is not None
    return b.node(Kind.PIECEWISE_INTERPOLATE, data, len(pairs), kind_type, float(has_init),
                  init if has_init else 0.0)


class PiecewiseInterpolate(Schedule):
    r"""Interpolation between values scaled at boundaries (optax
    ``piecewise_interpolate_schedule``).

    With boundaries :math:`b_1 < \dots < b_n` (:math:`b_0 = 0`) and scales :math:`s_i`, the
    values are :math:`v_0` = ``init_value`` (the group's lr by default) and
    :math:`v_i = v_{i-1} s_i`. For :math:`b_{i-1} \le t < b_i`,
    :math:`p = (t - b_{i-1}) / \max(b_i - b_{i-1}, 1)` and

    .. math:: \eta_t = \begin{cases} (v_i - v_{i-1}) \, p + v_{i-1} & \text{linear} \\
              v_i + \frac{v_{i-1} - v_i}{2} (\cos(\pi p) + 1) & \text{cosine} \end{cases}

    from :math:`b_n` on, :math:`v_n`. ``boundaries_and_scales`` is optax's dict
    ``{boundary: scale}`` or a sequence of ``(boundary, scale)`` pairs (what ``to_dict`` keeps);
    boundaries are distinct step counts >= 0, scales >= 0. A boundary at 0 makes its scale apply
    from the start, as in optax.

    >>> PiecewiseInterpolate("linear", {2: 0.5, 4: 0.0}).values(6).tolist()
    [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    _fields = ("interpolate_type", "boundaries_and_scales", "init_value")

    def __init__(self, interpolate_type: str, boundaries_and_scales=None,
                 init_value: float | None = None):
        owner = "PiecewiseInterpolate"
        self.interpolate_type = check_choice("interpolate_type", interpolate_type, _INTERPOLATE,
                                             owner=owner)
        self.boundaries_and_scales = _pairs(boundaries_and_scales, owner)
        self.init_value = (None if init_value is None
                           else check_float("init_value", init_value, 0.0, owner=owner))
        self.absolute = self.init_value is not None

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return _encode_piecewise(b, _INTERPOLATE[self.interpolate_type],
                                 self.boundaries_and_scales, self.init_value)


class LinearOneCycle(Schedule):
    r"""The linear one-cycle schedule of optax ``linear_onecycle_schedule`` (absolute: the
    group's lr is ignored).

    :class:`PiecewiseInterpolate` (linear) from ``peak_value / div_factor`` with optax's scales
    ``{int(pct_start T): div_factor, int(pct_final T): 1 / div_factor,
    T: 1 / final_div_factor}`` (a later key replaces an equal earlier one, as in the dict), with
    :math:`T` = ``transition_steps``: up to the peak at ``pct_start``, down to the initial
    value at ``pct_final``, then to ``initial / final_div_factor`` at :math:`T`, held after.
    ``peak_value`` takes one value per param group. Unlike torch's ``OneCycleLR`` the phases end
    at integer steps and the momentum is not cycled.

    >>> [round(x, 12) for x in LinearOneCycle(4, 1.0, 0.5, 0.75, div_factor=2.0,
    ...                                       final_div_factor=10.0).values(6).tolist()]
    [0.5, 0.75, 1.0, 0.5, 0.05, 0.05]
    """

    _fields = ("transition_steps", "peak_value", "pct_start", "pct_final", "div_factor",
               "final_div_factor")
    absolute = True

    def __init__(self, transition_steps: int, peak_value, pct_start: float = 0.3,
                 pct_final: float = 0.85, div_factor: float = 25.0,
                 final_div_factor: float = 1e4):
        owner = "LinearOneCycle"
        self.transition_steps = check_int("transition_steps", transition_steps, 1, owner=owner)
        self.peak_value = check_per_group_float("peak_value", peak_value, 0.0, owner=owner)
        self.pct_start = check_float("pct_start", pct_start, 0.0, 1.0, owner=owner)
        self.pct_final = check_float("pct_final", pct_final, 0.0, 1.0, owner=owner)
        self.div_factor = check_float("div_factor", div_factor, 0.0, owner=owner, strict_min=True)
        self.final_div_factor = check_float("final_div_factor", final_div_factor, 0.0,
                                            owner=owner, strict_min=True)

    def boundaries_and_scales(self) -> dict[int, float]:
        """optax's dict, built in optax's order."""
        steps = self.transition_steps
        return {
            int(self.pct_start * steps): self.div_factor,
            int(self.pct_final * steps): 1.0 / self.div_factor,
            steps: 1.0 / self.final_div_factor,
        }

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        peak = per_group(self.peak_value, group, "peak_value", "LinearOneCycle")
        pairs = tuple(sorted(self.boundaries_and_scales().items()))
        return _encode_piecewise(b, _INTERPOLATE["linear"], pairs, peak / self.div_factor)
