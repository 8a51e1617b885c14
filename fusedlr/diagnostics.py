"""Warnings and errors that fusedlr's optimizers raise about how they are used.

- ``DoubleScheduleWarning``: a group that has a fusedlr ``schedule`` had its ``lr`` changed by
  someone else (a ``torch.optim.lr_scheduler``, a framework's scheduler, a hand edit). The
  schedule multiplies ``group['lr']`` on the device, so the two schedules compound silently.
- ``HostLRUnknownError``: ``get_host_lr`` cannot know the lr on the host without reading the
  device (a device-side decision changed it), and was told not to read it.
- ``HostLRWarning``: ``get_host_lr(fallback="device")`` read the device instead (once per
  optimizer).
"""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class DoubleScheduleWarning(UserWarning):
    """A scheduled group's ``lr`` was changed by another scheduler or by hand."""


class HostLRWarning(UserWarning):
    """The host mirror of the lr is unknowable; the device was read instead (a sync)."""


class HostLRUnknownError(RuntimeError):
    """The host mirror of the lr is unknowable (the message says why)."""


_FIX = (
    "fusedlr already applies this group's schedule on the device, inside the update, so the "
    "two schedules multiply. Fix: drop the other scheduler (torch: no scheduler.step(); "
    "HF Trainer: fusedlr.integrations.transformers; Lightning: return no lr_scheduler from "
    "configure_optimizers; timm: no timm scheduler), or set the group's schedule=None so the "
    "other scheduler alone drives group['lr']. An intended change of the base lr: filter "
    "fusedlr.DoubleScheduleWarning."
)


def check_double_schedule(opt, index: int, group: dict, old_lr: float) -> bool:
    """Warns (returns True) if the scheduled group ``index`` was touched by another scheduler:
    it gained ``initial_lr`` (torch's and timm's schedulers set it when they attach) or its
    ``lr`` changed from ``old_lr``. Called by ``_sync_groups`` only for groups with a schedule,
    and only until it has warned once."""
    attached = "initial_lr" in group and not opt._initial_lr_at_layout[index]
    changed = float(group["lr"]) != old_lr
    if not (attached or changed):
        return False
    torch_wrapped = getattr(getattr(opt, "step", None), "_wrapped_by_lr_sched", False)
    if torch_wrapped:
        who = "a torch.optim.lr_scheduler attached to this optimizer (it wraps optimizer.step)"
    elif attached:
        who = "a scheduler that set group['initial_lr'] when it attached (torch and timm do)"
    else:
        who = "a scheduler's step() or a hand edit"
    what = (f"its lr changed from {old_lr!r} to {group['lr']!r}" if changed
            else "it gained 'initial_lr'")
    warnings.warn(
        f"{type(opt).__name__} param group {index} has schedule={group['schedule']!r} and "
        f"{what}, by {who}. {_FIX}",
        DoubleScheduleWarning,
        stacklevel=user_stacklevel(),
    )
    return True


def user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside fusedlr (and
    torch's optimizer wrappers), whatever path led here."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(_PACKAGE_DIR) or os.sep + os.path.join("torch", "optim") in path):
            return level
        frame, level = frame.f_back, level + 1
    return 1
