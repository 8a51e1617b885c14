"""Cyclic schedules named and parametrised as ``torch.optim.lr_scheduler`` (minus optimizer and
last_epoch): warm restarts, CyclicLR and OneCycleLR, with momentum cycling on the device.

``t`` is the number of scheduler steps taken (torch's ``last_epoch``). CyclicLR and OneCycleLR
are absolute (they ignore the group's lr, as torch overwrites it); their lr / momentum
arguments take one value per param group, as in torch.
"""

from __future__ import annotations

import math

from ._base import (
    Kind,
    ProgramBuilder,
    Schedule,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_per_group_float,
    per_group,
    tabulate,
)
from .tables import MAX_TABLE_STEPS


class CosineAnnealingWarmRestarts(Schedule):
    r"""Cosine annealing with warm restarts, SGDR (torch ``CosineAnnealingWarmRestarts``).

    Period ``i`` lasts :math:`T_i = T_0 \cdot T_{mult}^i` steps; :math:`T_{cur}` counts the
    steps since the current period began (torch's integer recursion, in closed form):

    .. math:: \eta_t = \eta_{min} + (\eta_0 - \eta_{min})
              \frac{1 + \cos(\pi T_{cur} / T_i)}{2}

    ``eta_min`` is absolute; ``eta_0`` is the group's lr.

    >>> [round(x, 12) for x in CosineAnnealingWarmRestarts(T_0=2, T_mult=2).values(7).tolist()]
    [1.0, 0.5, 1.0, 0.853553390593, 0.5, 0.146446609407, 1.0]
    """

    _fields = ("T_0", "T_mult", "eta_min")

    def __init__(self, T_0: int, T_mult: int = 1, eta_min: float = 0.0):  # noqa: N803
        owner = "CosineAnnealingWarmRestarts"
        self.T_0 = check_int("T_0", T_0, 1, owner=owner)
        self.T_mult = check_int("T_mult", T_mult, 1, owner=owner)
        self.eta_min = check_float("eta_min", eta_min, 0.0, owner=owner)

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        return b.node(Kind.COSINE_WARM_RESTARTS, self.T_0, self.T_mult, self.eta_min)


_CYCLIC_MODES = {"triangular": 0, "triangular2": 1, "exp_range": 2}
_CYCLIC_SCALE_TABLE = 3
_SCALE_MODES = {"cycle": 0, "iterations": 1}


class CyclicLR(Schedule):
    r"""Cyclical learning rate (torch ``CyclicLR``; absolute: the group's lr is ignored).

    With :math:`T = \text{up} + \text{down}`, :math:`r = \text{up} / T`,
    :math:`c = \lfloor 1 + t / T \rfloor`, :math:`x = 1 + t / T - c`,
    :math:`f = x / r` if :math:`x \le r` else :math:`(x - 1) / (r - 1)`:

    .. math:: \eta_t = \text{base\_lr} + (\text{max\_lr} - \text{base\_lr}) \, f \, s, \qquad
              m_t = \text{max\_m} - (\text{max\_m} - \text{base\_m}) \, f \, s

    with :math:`s = 1` (``triangular``), :math:`2^{-(c - 1)}` (``triangular2``),
    :math:`\gamma^t` (``exp_range``) or ``scale_fn(c)`` / ``scale_fn(t)`` (``scale_mode``
    ``'cycle'`` / ``'iterations'``). With ``cycle_momentum`` the momentum (SGD) / beta1 (Adam)
    follows :math:`m_t`.

    A custom ``scale_fn`` is a Python function, so it is tabulated once: the keyword-only
    ``total_steps`` (needed only then) bounds the table; past it the last scale holds (torch
    would keep calling the function). ``base_lr``, ``max_lr`` and the momenta take one value
    per param group.

    >>> CyclicLR(0.1, 0.5, step_size_up=2, cycle_momentum=False).values(6).tolist()
    [0.1, 0.30000000000000004, 0.5, 0.30000000000000004, 0.1, 0.30000000000000004]
    """

    _fields = (
        "base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "scale_fn",
        "scale_mode", "cycle_momentum", "base_momentum", "max_momentum", "total_steps",
    )
    absolute = True

    def __init__(self, base_lr, max_lr, step_size_up: int = 2000, step_size_down: int | None = None,
                 mode: str = "triangular", gamma: float = 1.0, scale_fn=None,
                 scale_mode: str = "cycle", cycle_momentum: bool = True, base_momentum=0.8,
                 max_momentum=0.9, *, total_steps: int | None = None):
        owner = "CyclicLR"
        self.base_lr = check_per_group_float("base_lr", base_lr, 0.0, owner=owner)
        self.max_lr = check_per_group_float("max_lr", max_lr, 0.0, owner=owner)
        self.step_size_up = check_int("step_size_up", step_size_up, 1, owner=owner)
        self.step_size_down = (
            None if step_size_down is None
            else check_int("step_size_down", step_size_down, 0, owner=owner)
        )
        if scale_fn is None:
            check_choice("mode", mode, _CYCLIC_MODES, owner=owner)
        self.mode = mode
        self.gamma = check_float("gamma", gamma, 0.0, owner=owner, strict_min=True)
        self.scale_mode = check_choice("scale_mode", scale_mode, _SCALE_MODES, owner=owner)
        self.cycle_momentum = check_bool("cycle_momentum", cycle_momentum, owner=owner)
        self.base_momentum = check_per_group_float("base_momentum", base_momentum, 0.0, owner=owner)
        self.max_momentum = check_per_group_float("max_momentum", max_momentum, 0.0, owner=owner)
        if total_steps is not None:
            total_steps = check_int("total_steps", total_steps, 1, MAX_TABLE_STEPS, owner=owner)
        self.total_steps = total_steps
        self.scale_fn = self._scale_table(scale_fn, owner)

    def _scale_table(self, scale_fn, owner):
        if scale_fn is None:
            return None
        if isinstance(scale_fn, (list, tuple)):  # already tabulated (from state_dict)
            if not scale_fn:
                raise ValueError(f"{owner}: scale_fn table must not be empty")
            return tabulate(lambda i: scale_fn[i], range(len(scale_fn)), "scale_fn", owner)
        if not callable(scale_fn):
            raise TypeError(f"{owner}: scale_fn must be a callable, a sequence of numbers or None")
        if self.total_steps is None:
            raise ValueError(
                f"{owner}: total_steps is required with a custom scale_fn: the Python function is "
                "tabulated once over the first total_steps steps (past them the last scale holds)"
            )
        if self.scale_mode == "iterations":
            xs = range(self.total_steps)
        else:  # cycles 1 .. the cycle of step total_steps - 1, in torch's float arithmetic
            xs = range(1, math.floor(1 + (self.total_steps - 1) / self._total_size()) + 1)
        return tabulate(scale_fn, xs, "scale_fn", owner)

    def _total_size(self) -> float:
        up = float(self.step_size_up)
        down = float(self.step_size_down) if self.step_size_down is not None else up
        return up + down

    def cycles_momentum(self) -> bool:
        return self.cycle_momentum

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        owner = "CyclicLR"
        lo = per_group(self.base_lr, group, "base_lr", owner)
        hi = per_group(self.max_lr, group, "max_lr", owner)
        m_lo = per_group(self.base_momentum, group, "base_momentum", owner)
        m_hi = per_group(self.max_momentum, group, "max_momentum", owner)
        up = self.step_size_up
        down = self.step_size_down if self.step_size_down is not None else up
        table, n = 0, 0
        if self.scale_fn is not None:
            mode = _CYCLIC_SCALE_TABLE
            table, n = b.block(self.scale_fn), len(self.scale_fn)
        else:
            mode = _CYCLIC_MODES[self.mode]
        return b.node(Kind.CYCLIC, lo, hi, up, down, mode, self.gamma,
                      _SCALE_MODES[self.scale_mode], table, n, float(self.cycle_momentum),
                      m_lo, m_hi)


class OneCycleLR(Schedule):
    r"""The 1cycle policy (torch ``OneCycleLR``; absolute: the group's lr is ignored).

    ``initial = max_lr / div_factor``, ``min = initial / final_div_factor``. Phases end at
    :math:`e_1 = \text{pct\_start} \cdot N - 1` (initial → max, momentum max → base) and
    :math:`N - 1` (max → min, momentum base → max); with ``three_phase`` at :math:`e_1`,
    :math:`2 \, \text{pct\_start} \cdot N - 2` (max → initial, base → max) and :math:`N - 1`
    (initial → min, momentum held at max). In the first phase with :math:`t \le e` (or the
    last), :math:`p = (t - s) / (e - s)` and from :math:`a` to :math:`b`:

    .. math:: \text{cos: } b + \frac{a - b}{2} (\cos(\pi p) + 1), \qquad
              \text{linear: } (b - a) p + a

    ``N`` is ``total_steps``, or ``epochs * steps_per_epoch``. ``max_lr`` and the momenta take
    one value per param group.

    Past the horizon (deliberate deviation): torch evaluates ``t == N`` (extrapolating the last
    phase one step) and raises for ``t > N``. The device cannot raise, so ``t == N`` matches
    torch and every ``t > N`` holds the final values of the last phase (``min`` lr and its end
    momentum), i.e. the value at ``t = N - 1``.

    Validation is torch's, plus ``pct_start`` must lie in (0, 1) and no phase that is ever
    evaluated may be empty (torch divides by zero there).

    >>> [round(x, 6) for x in OneCycleLR(1.0, total_steps=4, pct_start=0.5,
    ...                                  anneal_strategy='linear').values(6).tolist()]
    [0.04, 1.0, 0.500002, 4e-06, -0.499994, 4e-06]
    """

    _fields = (
        "max_lr", "total_steps", "epochs", "steps_per_epoch", "pct_start", "anneal_strategy",
        "cycle_momentum", "base_momentum", "max_momentum", "div_factor", "final_div_factor",
        "three_phase",
    )
    absolute = True

    def __init__(self, max_lr, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True, base_momentum=0.85,
                 max_momentum=0.95, div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False):
        owner = "OneCycleLR"
        self.max_lr = check_per_group_float("max_lr", max_lr, 0.0, owner=owner)
        if total_steps is not None:
            self.total_steps = check_int("total_steps", total_steps, 1, owner=owner)
            self.epochs = None if epochs is None else check_int("epochs", epochs, 1, owner=owner)
            self.steps_per_epoch = (
                None if steps_per_epoch is None
                else check_int("steps_per_epoch", steps_per_epoch, 1, owner=owner)
            )
            self._n = self.total_steps
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = None
            self.epochs = check_int("epochs", epochs, 1, owner=owner)
            self.steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1, owner=owner)
            self._n = self.epochs * self.steps_per_epoch
        else:
            raise ValueError(
                f"{owner}: total_steps is required, or both epochs and steps_per_epoch"
            )
        self.pct_start = check_float("pct_start", pct_start, 0.0, 1.0, owner=owner,
                                     strict_min=True, strict_max=True)
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"),
                                            owner=owner)
        self.cycle_momentum = check_bool("cycle_momentum", cycle_momentum, owner=owner)
        self.base_momentum = check_per_group_float("base_momentum", base_momentum, 0.0, owner=owner)
        self.max_momentum = check_per_group_float("max_momentum", max_momentum, 0.0, owner=owner)
        self.div_factor = check_float("div_factor", div_factor, 0.0, owner=owner, strict_min=True)
        self.final_div_factor = check_float("final_div_factor", final_div_factor, 0.0,
                                            owner=owner, strict_min=True)
        self.three_phase = check_bool("three_phase", three_phase, owner=owner)
        self._check_phases(owner)

    def _check_phases(self, owner):
        n, pct = self._n, self.pct_start
        end0 = float(pct * n) - 1
        last_start = float(2 * pct * n) - 2 if self.three_phase else end0
        if end0 == 0:
            raise ValueError(
                f"{owner}: pct_start * total_steps == 1 leaves the first phase empty (torch "
                f"divides by zero at step 0); got pct_start={pct}, total_steps={n}"
            )
        if (n - 1) - last_start == 0:
            raise ValueError(
                f"{owner}: pct_start={pct} with total_steps={n} leaves the last phase empty "
                "(torch divides by zero there)"
            )

    def cycles_momentum(self) -> bool:
        return self.cycle_momentum

    def _encode(self, b: ProgramBuilder, group: int) -> int:
        owner = "OneCycleLR"
        return b.node(
            Kind.ONE_CYCLE,
            per_group(self.max_lr, group, "max_lr", owner),
            self.div_factor,
            self.final_div_factor,
            self._n,
            self.pct_start,
            0 if self.anneal_strategy == "cos" else 1,
            float(self.three_phase),
            float(self.cycle_momentum),
            per_group(self.base_momentum, group, "base_momentum", owner),
            per_group(self.max_momentum, group, "max_momentum", owner),
        )
