"""torch -> fusedlr: ``from_torch(scheduler)`` turns a constructed ``torch.optim.lr_scheduler``
tree, at any point of its run, into fusedlr schedule specs that continue where it is.

What it returns (``TorchSchedule``), per param group of the scheduler's optimizer:

- ``schedules[g]``: the fusedlr spec (``schedule`` is the one spec when every group has the same);
- ``base_lrs[g]``: what the fused group's ``lr`` must be (torch's ``initial_lr``: fusedlr's group
  lr is the *base* lr, torch's is the current one);
- ``momenta[g]``: the SGD momentum / Adam beta1 the group must hold wherever no child cycles it
  (read off the torch run; ``None`` for optimizers with neither);
- ``step``: the schedule time the torch scheduler is at (its ``last_epoch``: the next optimizer
  step uses the lr of that time), and ``counter = step * steps_per_epoch + step_in_epoch``: the
  value the fused optimizer's ``schedule_counter`` must hold to continue from there. That is how
  the offset is represented: the spec is the whole schedule from t = 0, the counter says where
  in it the run is (``fusedlr.from_torch`` sets it; by hand: ``opt.set_schedule_counter(c)``).

Verification. torch's schedulers are recursive: each ``step()`` rewrites ``group['lr']`` from the
lr before it, and ``SequentialLR`` / ``ChainedScheduler`` step their children in a way whose result
is not always the closed form of the tree (README.md, section "Coming from torch.optim", lists the
cases). So the converted spec is checked against torch itself: a copy of the scheduler tree, with
its current state, is stepped on a stand-in optimizer (the real optimizer and scheduler are not
touched) for ``check_steps`` steps and its lr and momentum are compared with the spec's
``values()`` / ``momentum_values()``. Where they part, ``from_torch`` raises ``ConversionError``
naming the step, the group, both values and the child responsible (the default: a migration tool
should not change a run silently), or with ``strict=False`` warns ``ConversionWarning`` and returns
fusedlr's closed form. """

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler as tls

from fusedlr.diagnostics import user_stacklevel

from . import _torch_check as check
from ._base import Schedule, check_bool, check_float, check_int
from .composite import ChainedScheduler, SequentialLR
from .cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from .tables import MAX_TABLE_STEPS, LambdaLR, MultiplicativeLR
from .torch_like import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    PolynomialLR,
    StepLR,
)

__all__ = ["ConversionError", "ConversionWarning", "TorchSchedule", "from_torch"]


class ConversionError(ValueError):
    """A torch scheduler cannot be converted, or its conversion would not follow torch."""


class ConversionWarning(UserWarning):
    """``strict=False``: the converted schedule parts from torch (the message says where)."""


@dataclass(frozen=True)
class TorchSchedule:
    """What ``from_torch`` returns (see the module docstring)."""

    schedules: tuple[Schedule, ...]
    base_lrs: tuple[float, ...]
    momenta: tuple[float | None, ...]
    step: int
    counter: int
    steps_per_epoch: int
    checked_steps: int
    mismatch: str | None = None

    @property
    def schedule(self) -> Schedule:
        """The spec, when every param group has the same one."""
        first = self.schedules[0]
        for g, s in enumerate(self.schedules[1:], 1):
            if s != first:
                raise ValueError(
                    f"param groups 0 and {g} have different schedules ({first!r} vs {s!r}): "
                    "use schedules[g] per group"
                )
        return first


def from_torch(scheduler, *, total_steps: int | None = None, steps_per_epoch: int = 1,
               step_in_epoch: int = 0, check_steps: int | None = None, strict: bool = True,
               rtol: float = 1e-9) -> TorchSchedule:
    """The fusedlr equivalent of a constructed ``torch.optim.lr_scheduler`` scheduler.

    Converts StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR,
    CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR, LambdaLR,
    MultiplicativeLR, SequentialLR and ChainedScheduler (nested), at any point of their run.

    Args:
        scheduler: the torch scheduler (its optimizer supplies the param groups).
        total_steps: the number of scheduler steps the run takes. Required when the tree holds a
            LambdaLR, MultiplicativeLR or a CyclicLR with a custom ``scale_fn``: their Python
            functions are tabulated once for the schedule times ``0 .. total_steps - 1`` (each
            child over the times it is active); from ``total_steps`` on the last value holds.
            The functions must be pure functions of the step (they are called again here).
            Verification stops at ``total_steps``.
        steps_per_epoch: optimizer steps per scheduler step (an epoch-based loop calling
            ``scheduler.step()`` once an epoch); the fused optimizer's ``steps_per_epoch``.
        step_in_epoch: optimizer steps already taken since the last ``scheduler.step()``,
            in ``[0, steps_per_epoch)``.
        check_steps: how many schedule steps, from the current one, to compare with torch.
            ``None``: through the schedule's natural length (its last milestone or phase plus a
            period), at least 1000 and at most 100000 steps; ``0``: no check.
        strict: where the closed form parts from torch: ``True`` raises ``ConversionError``,
            ``False`` warns ``ConversionWarning`` and returns the closed form anyway.
        rtol: relative tolerance of the check (torch's recursive updates round differently from
            the closed form; real divergences are far larger).

    Raises:
        ConversionError: an unsupported scheduler (``ReduceLROnPlateau``: use
            ``fusedlr.ReduceLROnPlateau``), missing ``total_steps``, arguments fusedlr's spec
            refuses, or (``strict``) a tree whose torch behaviour the closed form does not follow.
    """
    total_steps = None if total_steps is None else check_int(
        "total_steps", total_steps, 1, owner="from_torch")
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1, owner="from_torch")
    step_in_epoch = check_int("step_in_epoch", step_in_epoch, 0, steps_per_epoch - 1,
                              owner="from_torch")
    check_steps = None if check_steps is None else check_int(
        "check_steps", check_steps, 0, owner="from_torch")
    strict = check_bool("strict", strict, owner="from_torch")
    rtol = check_float("rtol", rtol, 0.0, 1.0, owner="from_torch", strict_min=True)

    _check_tree(scheduler, "", {})
    groups = scheduler.optimizer.param_groups
    step = _time(scheduler)
    if total_steps is not None and step >= total_steps:
        raise ConversionError(
            f"from_torch: total_steps ({total_steps}) must exceed the scheduler's current step "
            f"({step}): the run continues from there"
        )
    cache: dict = {}
    specs = tuple(_spec(scheduler, g, total_steps, "", cache) for g in range(len(groups)))
    if all(s == specs[0] for s in specs):
        specs = (specs[0],) * len(specs)
    bases = tuple(_base_lr(scheduler, g, group) for g, group in enumerate(groups))

    n = check_steps if check_steps is not None else check.default_horizon(scheduler, step)
    if total_steps is not None:
        n = min(n, total_steps - step)
    result = check.compare(scheduler, specs, bases, step, n, rtol)
    mismatch = None
    if result.mismatch is not None:
        mismatch = result.mismatch
        if strict:
            raise ConversionError(
                f"from_torch: {mismatch} Pass strict=False to accept fusedlr's closed form "
                "(a ConversionWarning says where it differs); see README.md, 'Coming from "
                "torch.optim'."
            )
        warnings.warn(f"from_torch: {mismatch} fusedlr's closed form is used.",
                      ConversionWarning, stacklevel=user_stacklevel())
    return TorchSchedule(
        schedules=specs, base_lrs=bases, momenta=result.momenta, step=step,
        counter=step * steps_per_epoch + step_in_epoch, steps_per_epoch=steps_per_epoch,
        checked_steps=result.checked, mismatch=mismatch,
    )


# -- the tree -----------------------------------------------------------------------------------
_LEAVES = (
    tls.StepLR, tls.MultiStepLR, tls.ConstantLR, tls.LinearLR, tls.ExponentialLR,
    tls.PolynomialLR, tls.CosineAnnealingLR, tls.CosineAnnealingWarmRestarts, tls.CyclicLR,
    tls.OneCycleLR, tls.LambdaLR, tls.MultiplicativeLR,
)
_COMPOSITES = (tls.SequentialLR, tls.ChainedScheduler)
SUPPORTED = ", ".join(c.__name__ for c in _LEAVES + _COMPOSITES)


def torch_class(s) -> type | None:
    """The supported torch class ``s`` is an instance of (the nearest in its MRO), or None."""
    for cls in type(s).__mro__:
        if cls in _LEAVES or cls in _COMPOSITES:
            return cls
    return None


def where(path: str) -> str:
    """``path`` (``schedulers[1].schedulers[0]``) as words for messages."""
    return f"at {path}" if path else "(the root scheduler)"


def children(s) -> list:
    return list(s._schedulers) if torch_class(s) in _COMPOSITES else []


def _check_tree(s, path: str, seen: dict) -> None:
    """Refuses what has no fusedlr equivalent, naming the scheduler and what to use instead."""
    name = type(s).__name__
    if id(s) in seen:
        raise ConversionError(
            f"from_torch: the same {name} is both {where(seen[id(s)])} and {where(path)}; torch "
            "steps it twice per step there, which has no closed form"
        )
    seen[id(s)] = path
    if isinstance(s, tls.ReduceLROnPlateau):
        raise ConversionError(
            f"from_torch: {name} {where(path)} has no closed form (it reacts to a metric): use "
            "fusedlr.ReduceLROnPlateau(optimizer, ...) on the fused optimizer, with the same "
            "arguments; plateau.step(loss) takes a 0-dim tensor and never syncs"
        )
    swalr = getattr(torch.optim.swa_utils, "SWALR", None)
    if swalr is not None and isinstance(s, swalr):
        raise ConversionError(
            f"from_torch: {name} {where(path)} (stochastic weight averaging) anneals from the lr "
            "the optimizer had when it started, which fusedlr cannot express; keep torch.optim "
            "for the SWA phase, or replace it by a fusedlr.schedules.SequentialLR that ends in a "
            f"constant lr. Convertible schedulers: {SUPPORTED}"
        )
    if not isinstance(s, tls.LRScheduler):
        raise ConversionError(
            f"from_torch: scheduler {where(path)} must be a torch.optim.lr_scheduler scheduler, "
            f"got {name}"
        )
    if torch_class(s) is None:
        raise ConversionError(
            f"from_torch: {name} {where(path)} has no fusedlr equivalent. Convertible "
            f"schedulers: {SUPPORTED}; anything else can be written as "
            "fusedlr.schedules.LambdaLR(fn, total_steps)"
        )
    for i, child in enumerate(children(s)):
        _check_tree(child, f"{path}.schedulers[{i}]".lstrip("."), seen)


def _time(s) -> int:
    """The schedule time the tree is at: the root's ``last_epoch`` (a ChainedScheduler has
    none: its first child's)."""
    if torch_class(s) is tls.ChainedScheduler:
        return _time(s._schedulers[0])
    t = s.last_epoch
    if isinstance(t, float) and t.is_integer():
        t = int(t)
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ConversionError(
            f"from_torch: {type(s).__name__}.last_epoch is {t!r}: a converted scheduler must "
            "have been stepped a whole number of times (step(epoch) with a fractional epoch has "
            "no closed form)"
        )
    return t


def _base_lr(s, g: int, group: dict) -> float:
    """The fused group's lr: torch's base lr (``initial_lr``), else the first leaf's."""
    if "initial_lr" in group:
        return float(group["initial_lr"])
    stack = [s]
    while stack:
        node = stack.pop(0)
        if getattr(node, "base_lrs", None) is not None and g < len(node.base_lrs):
            return float(node.base_lrs[g])
        stack.extend(children(node))
    return float(group["lr"])


# -- specs --------------------------------------------------------------------------------------
def _spec(s, g: int, n: int | None, path: str, cache: dict) -> Schedule:
    """The spec of ``s`` for param group ``g``; ``n``: how many schedule times (local to ``s``)
    its tables need, or None when no total_steps was given."""
    cls = torch_class(s)
    if cls is tls.SequentialLR:
        ms = [int(m) for m in s._milestones]
        starts = [0] + ms
        kids = []
        for i, child in enumerate(s._schedulers):
            end = ms[i] if i < len(ms) else (None if n is None else max(n, starts[i] + 1))
            local = None if end is None else max(1, end - starts[i])
            kids.append(_spec(child, g, local, f"{path}.schedulers[{i}]".lstrip("."), cache))
        return _build(SequentialLR, (kids, ms), s, path)
    if cls is tls.ChainedScheduler:
        kids = [_spec(c, g, n, f"{path}.schedulers[{i}]".lstrip("."), cache)
                for i, c in enumerate(s._schedulers)]
        return _build(ChainedScheduler, (kids,), s, path)
    return _leaf(cls, s, g, n, path, cache)


def _build(spec_cls, args, s, path, **kwargs) -> Schedule:
    try:
        return spec_cls(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConversionError(
            f"from_torch: cannot convert {type(s).__name__} {where(path)}: {e}"
        ) from e


def _per_group(values, g: int, name: str, s, path: str) -> float:
    if g >= len(values):
        raise ConversionError(
            f"from_torch: {type(s).__name__} {where(path)} has {len(values)} {name} but the "
            f"optimizer has param group {g} (a group added after the scheduler was built?)"
        )
    return float(values[g])


def _leaf(cls, s, g, n, path, cache) -> Schedule:
    simple = {
        tls.StepLR: lambda: (StepLR, (s.step_size, s.gamma)),
        tls.MultiStepLR: lambda: (MultiStepLR, (sorted(s.milestones.elements()), s.gamma)),
        tls.ConstantLR: lambda: (ConstantLR, (s.factor, s.total_iters)),
        tls.LinearLR: lambda: (LinearLR, (s.start_factor, s.end_factor, s.total_iters)),
        tls.ExponentialLR: lambda: (ExponentialLR, (s.gamma,)),
        tls.PolynomialLR: lambda: (PolynomialLR, (s.total_iters, s.power)),
        tls.CosineAnnealingLR: lambda: (CosineAnnealingLR, (s.T_max, s.eta_min)),
        tls.CosineAnnealingWarmRestarts: lambda: (
            CosineAnnealingWarmRestarts, (s.T_0, s.T_mult, s.eta_min)),
    }
    if cls in simple:
        spec_cls, args = simple[cls]()
        return _build(spec_cls, args, s, path)
    if cls is tls.CyclicLR:
        return _cyclic(s, g, n, path)
    if cls is tls.OneCycleLR:
        return _one_cycle(s, g, path)
    # LambdaLR / MultiplicativeLR: tabulated
    if n is None:
        raise ConversionError(
            f"from_torch: {cls.__name__} {where(path)} calls a Python function every step; "
            "fusedlr tabulates it once, so pass total_steps= (the number of scheduler steps of "
            "the run; from there on the last value holds)"
        )
    if n > MAX_TABLE_STEPS:
        raise ConversionError(
            f"from_torch: total_steps must be <= {MAX_TABLE_STEPS} for {cls.__name__} "
            f"{where(path)} (its table would hold {n} values), got {n}"
        )
    if g >= len(s.lr_lambdas):
        _per_group(s.lr_lambdas, g, "lr_lambdas", s, path)
    fn = s.lr_lambdas[g]
    spec_cls = LambdaLR if cls is tls.LambdaLR else MultiplicativeLR
    key = (spec_cls, id(fn), n)
    if key not in cache:
        cache[key] = _build(spec_cls, (fn, n), s, path)
    return cache[key]


def _cyclic(s, g, n, path) -> Schedule:
    total, ratio = float(s.total_size), float(s.step_ratio)
    up = total * ratio
    if abs(up - round(up)) > 1e-9 * max(1.0, up) or abs(total - round(total)) > 1e-9 * total:
        raise ConversionError(
            f"from_torch: CyclicLR {where(path)} has step sizes {up:g} / {total - up:g}: "
            "fusedlr's CyclicLR needs whole steps"
        )
    up, total = round(up), round(total)
    custom = getattr(s, "_scale_fn_custom", None)
    kwargs = {}
    if custom is not None:
        if n is None:
            raise ConversionError(
                f"from_torch: CyclicLR {where(path)} has a custom scale_fn, a Python function "
                "fusedlr tabulates once: pass total_steps= (the number of scheduler steps of "
                "the run)"
            )
        kwargs = {"scale_fn": custom, "scale_mode": s.scale_mode, "total_steps": n}
    mom = {}
    if s.cycle_momentum:
        mom = {"base_momentum": _per_group(s.base_momentums, g, "base_momentums", s, path),
               "max_momentum": _per_group(s.max_momentums, g, "max_momentums", s, path)}
    return _build(
        CyclicLR,
        (_per_group(s.base_lrs, g, "base_lrs", s, path),
         _per_group(s.max_lrs, g, "max_lrs", s, path), up, total - up),
        s, path, mode=s.mode, gamma=s.gamma, cycle_momentum=bool(s.cycle_momentum),
        **mom, **kwargs,
    )


def _one_cycle(s, g, path) -> Schedule:
    """torch keeps OneCycleLR's lrs and momenta in the param group (``initial_lr``, ``max_lr``,
    ``min_lr``, ``max_momentum``, ``base_momentum``) and reads them every step: so does this."""
    group = s.optimizer.param_groups[g]
    phases = s._schedule_phases
    n = int(s.total_steps)
    end0 = float(phases[0]["end_step"])
    pct = (end0 + 1) / n
    for cand in (pct, math.nextafter(pct, math.inf), math.nextafter(pct, -math.inf)):
        if float(cand * n) - 1 == end0:  # torch stores only the phase ends: recover pct_start
            pct = cand
            break
    anneal = getattr(s, "_anneal_func_type", "cos")
    try:
        max_lr, initial, min_lr = (float(group[k]) for k in ("max_lr", "initial_lr", "min_lr"))
        div, final_div = max_lr / initial, initial / min_lr
    except (KeyError, ZeroDivisionError) as e:
        raise ConversionError(
            f"from_torch: OneCycleLR {where(path)}: param group {g} lacks a usable "
            f"initial_lr / max_lr / min_lr ({e!r})"
        ) from e
    mom = {}
    if s.cycle_momentum:
        mom = {"base_momentum": float(group["base_momentum"]),
               "max_momentum": float(group["max_momentum"])}
    return _build(
        OneCycleLR, (max_lr,), s, path, total_steps=n, pct_start=pct, anneal_strategy=anneal,
        cycle_momentum=bool(s.cycle_momentum), div_factor=div, final_div_factor=final_div,
        three_phase=len(phases) == 3, **mom,
    )
