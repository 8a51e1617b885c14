"""Checks a converted schedule against torch itself (``from_torch``'s verification).

A *shadow* of the torch scheduler tree (each scheduler copied with its current state, the
optimizer replaced by a stand-in holding copies of the param groups) is stepped forward; the
real optimizer and scheduler are never touched. The lr and momentum it writes into the groups
are compared, step by step, with the fusedlr specs' ``values()`` / ``momentum_values()``. Where
they part, ``_torch_blame.blame`` names the child of the tree responsible and why.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch.optim import lr_scheduler as tls

from ._torch_blame import blame

MIN_CHECK = 1000
MAX_CHECK = 100_000


@dataclass
class CheckResult:
    momenta: tuple[float | None, ...]
    checked: int
    mismatch: str | None


# -- the shadow ---------------------------------------------------------------------------------
class _StandIn:
    """What a scheduler's ``step()`` touches of its optimizer: ``param_groups`` (copies)."""

    def __init__(self, groups: list[dict], defaults: dict):
        self.param_groups = groups
        self.defaults = defaults
        self._opt_called = True

    def step(self) -> None:  # pragma: no cover - never called
        pass


def _copy_value(v):
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, (list, dict, Counter)):
        return copy.copy(v)
    return v


def _shadow(s, opt: _StandIn):
    from .convert import children

    twin = object.__new__(type(s))
    state = {k: _copy_value(v) for k, v in vars(s).items()}
    state["optimizer"] = opt
    if "_schedulers" in state:
        state["_schedulers"] = [_shadow(c, opt) for c in children(s)]
    twin.__dict__.update(state)
    return twin


def _momentum(group: dict) -> float | None:
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return None


def replay(scheduler, n: int):
    """Per group, the torch lrs and momenta of the next ``n`` schedule times (the current one
    first), from a shadow of the tree. Stops early where torch raises; returns
    ``(lrs, momenta, error)`` with ``error`` the exception that stopped it (or None)."""
    real = scheduler.optimizer
    groups = [{k: _copy_value(v) for k, v in g.items() if k != "params"}
              for g in real.param_groups]
    opt = _StandIn(groups, dict(getattr(real, "defaults", {})))
    twin = _shadow(scheduler, opt)
    lrs = [[] for _ in groups]
    moms = [[] for _ in groups]
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(n):
            if k:
                try:
                    twin.step()
                except Exception as e:  # noqa: BLE001 - torch's own refusal ends the replay
                    error = e
                    break
            for g, group in enumerate(groups):
                lrs[g].append(float(group["lr"]))
                moms[g].append(_momentum(group))
    return lrs, moms, error


def _one_cycle_end(error) -> bool:
    """torch's OneCycleLR raises past total_steps; fusedlr holds the final value (documented)."""
    return isinstance(error, ValueError) and str(error).startswith("Tried to step")


# -- horizon ------------------------------------------------------------------------------------
def natural_end(s) -> int:
    """The local time by which ``s`` has shown everything it does (a phase end plus a period)."""
    from .convert import torch_class

    cls = torch_class(s)
    if cls is tls.SequentialLR:
        starts = [0] + [int(m) for m in s._milestones]
        return max(st + natural_end(c) for st, c in zip(starts, s._schedulers, strict=True))
    if cls is tls.ChainedScheduler:
        return max(natural_end(c) for c in s._schedulers)
    ends = {
        tls.StepLR: lambda: 2 * s.step_size,
        tls.MultiStepLR: lambda: max(s.milestones, default=0),
        tls.ConstantLR: lambda: s.total_iters,
        tls.LinearLR: lambda: s.total_iters,
        tls.PolynomialLR: lambda: s.total_iters,
        tls.CosineAnnealingLR: lambda: 2 * s.T_max,
        tls.CosineAnnealingWarmRestarts: lambda: s.T_0 * (1 + s.T_mult),
        tls.CyclicLR: lambda: 2 * s.total_size,
        tls.OneCycleLR: lambda: s.total_steps,
    }
    try:
        return int(math.ceil(ends[cls]())) + 1 if cls in ends else 1
    except (TypeError, ValueError, OverflowError):
        return MAX_CHECK


def default_horizon(scheduler, step: int) -> int:
    """Steps to check from ``step``: through the natural end, within [MIN_CHECK, MAX_CHECK]."""
    return min(max(natural_end(scheduler) + 1 - step, MIN_CHECK), MAX_CHECK)


# -- comparison ---------------------------------------------------------------------------------
def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + atol


def compare(scheduler, specs, bases, step: int, n: int, rtol: float) -> CheckResult:
    """Replays torch for ``n`` steps and compares; picks each group's momentum (what torch holds
    at the first checked step where the spec imposes none)."""
    current = [_momentum(g) for g in scheduler.optimizer.param_groups]
    if n <= 0:
        return CheckResult(tuple(current), 0, None)
    lrs, moms, error = replay(scheduler, n)
    done = len(lrs[0]) if lrs else 0
    first = None  # (k, group, what, torch value, fused value)
    momenta = []
    for g, spec in enumerate(specs):
        f_lr = spec.values(done, bases[g], group=g, start=step).tolist()
        f_mom = spec.momentum_values(done, group=g, start=step).tolist()
        free = next((k for k, m in enumerate(f_mom) if math.isnan(m)), None)
        own = moms[g][free] if free is not None else current[g]
        momenta.append(own)
        scale = max((abs(v) for v in lrs[g] + f_lr), default=0.0)
        for k in range(done if first is None else min(done, first[0])):
            if not _close(lrs[g][k], f_lr[k], rtol, 1e-3 * rtol * scale):
                first = (k, g, "lr", lrs[g][k], f_lr[k])
                break
            if moms[g][k] is None:
                continue
            fm = own if math.isnan(f_mom[k]) else f_mom[k]
            if not _close(moms[g][k], fm, rtol, 1e-3 * rtol):
                first = (k, g, "momentum", moms[g][k], fm)
                break
    mismatch = None
    if first is not None:
        k, g, what, tv, fv = first
        mismatch = _message(scheduler, step, step + k, g, what, tv, fv, step + done - 1)
    elif error is not None and not _one_cycle_end(error):
        who, why = blame(scheduler, step + done, 0, "lr")
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        mismatch = (
            f"torch's scheduler raises at step {step + done} ({text}) where fusedlr's schedule "
            f"continues. Cause: {who} {why}"
        )
    return CheckResult(tuple(momenta), done, mismatch)


def _message(scheduler, step, t, g, what, tv, fv, last) -> str:
    name = what if what == "lr" else (
        "momentum" if "momentum" in scheduler.optimizer.param_groups[g] else "beta1")
    who, why = blame(scheduler, t, g, what)
    return (
        f"the closed form parts from torch at step {t} (param group {g}): torch {name} {tv!r}, "
        f"fusedlr {name} {fv!r}. Cause: {who} {why} (checked steps {step}..{last}, from the "
        "scheduler's current step)."
    )
