"""fusedlr with HF accelerate: the schedule's introspection through ``AcceleratedOptimizer``.

``accelerator.prepare`` wraps every optimizer in ``accelerate.optimizer.AcceleratedOptimizer``,
which forwards ``step`` (skipped on the non-sync micro-batches of gradient accumulation, routed
through the ``GradScaler`` under fp16), ``zero_grad``, ``state_dict`` and ``param_groups``,
but nothing else: ``opt.get_last_lr()`` or ``opt.schedule_counter`` on the prepared optimizer
raise ``AttributeError``. This module gives them back without changing what accelerate does:

- ``prepare(accelerator, *objects)``: ``accelerator.prepare(*objects)``, then every returned
  ``AcceleratedOptimizer`` that wraps a fusedlr optimizer also answers ``get_last_lr``,
  ``get_last_momentum``, ``schedule_counter``, ``get_host_lr``, ``get_host_momentum``,
  ``host_lr_unknown_reason``, ``host_step_count``, ``sync_host_counter`` and
  ``fusedlr_optimizer``. It refuses a torch lr scheduler attached to a scheduled fusedlr
  group (the two schedules would multiply).
- ``expose(optimizer)``: the same for an optimizer you prepared with ``accelerator.prepare``.
- ``unwrap(optimizer)``: the fusedlr optimizer inside any chain of wrappers (``.optimizer``).

The recipe: give accelerate the fusedlr optimizer (its ``schedule=`` set) and no scheduler.
The schedule counter lives in the optimizer and advances in ``step()``; accelerate's prepared
optimizer does not call the inner ``step()`` on the non-sync micro-batches of gradient
accumulation, so the schedule advances once per real optimizer step, as an
``AcceleratedScheduler`` with ``step_scheduler_with_optimizer=True`` does. No ``scheduler.step()``
in the loop, and nothing for ``save_state`` to save besides the optimizer: the counter is in its
``state_dict``.

``expose`` changes the prepared object's class to ``FusedLRAcceleratedOptimizer``, a subclass of
``AcceleratedOptimizer`` that adds only read-through methods (no state, no override), so the
object accelerate keeps in ``accelerator._optimizers`` (what ``save_state`` / ``load_state``
iterate over) is the one you hold. Only plain ``AcceleratedOptimizer`` objects are changed;
backend-specific wrappers (DeepSpeed, Megatron-LM) are left as they are: use ``unwrap`` there.

Importing this module imports accelerate; ``import fusedlr`` does not.
"""

from __future__ import annotations

import torch

from fusedlr.integrations._wrappers import unwrap

try:
    from accelerate.optimizer import AcceleratedOptimizer
except ImportError as exc:  # pragma: no cover - exercised only without accelerate
    raise ImportError(
        "fusedlr.integrations.accelerate needs HF accelerate: pip install accelerate"
    ) from exc

__all__ = ["FusedLRAcceleratedOptimizer", "expose", "prepare", "unwrap"]


class FusedLRAcceleratedOptimizer(AcceleratedOptimizer):
    """An ``AcceleratedOptimizer`` around a fusedlr optimizer that also answers fusedlr's
    schedule introspection. Everything accelerate does (``step`` skipped on non-sync
    micro-batches, the ``GradScaler`` path, ``state_dict``) is ``AcceleratedOptimizer``'s own."""

    @property
    def fusedlr_optimizer(self) -> torch.optim.Optimizer:
        """The wrapped fusedlr optimizer."""
        return unwrap(self.optimizer)

    def get_last_lr(self) -> list[torch.Tensor]:
        """Per group, the lr the next ``step()`` uses (0-dim device tensors; reading syncs)."""
        return self.fusedlr_optimizer.get_last_lr()

    def get_last_momentum(self) -> list[torch.Tensor]:
        """Per group, the momentum / beta1 the next ``step()`` uses (device tensors)."""
        return self.fusedlr_optimizer.get_last_momentum()

    @property
    def schedule_counter(self) -> torch.Tensor:
        """The number of real optimizer steps the schedule has counted (int64, device)."""
        return self.fusedlr_optimizer.schedule_counter

    def get_host_lr(self, which: str = "last", *, fallback: str = "raise") -> list[float]:
        """Per group, the lr of the last (``which="last"``) or next (``"next"``) step, computed
        on the host without a sync (see ``fusedlr`` optimizers' ``get_host_lr``)."""
        return self.fusedlr_optimizer.get_host_lr(which, fallback=fallback)

    def get_host_momentum(self, which: str = "last", *, fallback: str = "raise") -> list[float]:
        """Per group, the momentum / beta1 of the last or next step, on the host."""
        return self.fusedlr_optimizer.get_host_momentum(which, fallback=fallback)

    @property
    def host_lr_unknown_reason(self) -> str | None:
        """Why ``get_host_lr`` cannot answer from the host, or None when it can."""
        return self.fusedlr_optimizer.host_lr_unknown_reason

    @property
    def host_step_count(self) -> int:
        """The host mirror of ``schedule_counter``."""
        return self.fusedlr_optimizer.host_step_count

    def sync_host_counter(self) -> None:
        """Reads the device counter once and makes the host mirror exact again."""
        self.fusedlr_optimizer.sync_host_counter()


def expose(optimizer: AcceleratedOptimizer) -> FusedLRAcceleratedOptimizer:
    """Makes a prepared ``AcceleratedOptimizer`` around a fusedlr optimizer answer fusedlr's
    introspection (see the module docstring); returns the same object."""
    if isinstance(optimizer, FusedLRAcceleratedOptimizer):
        return optimizer
    if type(optimizer) is not AcceleratedOptimizer:
        raise TypeError(
            f"optimizer: expected the accelerate.optimizer.AcceleratedOptimizer that "
            f"accelerator.prepare returns, got {type(optimizer).__name__}; for other wrappers "
            "call fusedlr.integrations.accelerate.unwrap(optimizer).get_last_lr() etc."
        )
    unwrap(optimizer)  # raises when no fusedlr optimizer is inside
    optimizer.__class__ = FusedLRAcceleratedOptimizer
    return optimizer


def prepare(accelerator, *objects, **prepare_kwargs):
    """``accelerator.prepare(*objects, **prepare_kwargs)``, with fusedlr's introspection
    reachable on the returned optimizers (``expose``). Returns what ``accelerator.prepare``
    returns (one object, or a tuple in the order given).

    Raises ``ValueError`` when a torch lr scheduler among ``objects`` drives a param group
    that has a fusedlr schedule: accelerate would step it (``AcceleratedScheduler``) and it
    would rewrite ``group['lr']``, the base lr that the on-device schedule multiplies."""
    for obj in objects:
        _refuse_double_schedule(obj)
    prepared = accelerator.prepare(*objects, **prepare_kwargs)
    items = prepared if isinstance(prepared, tuple) else (prepared,)
    for item in items:
        if type(item) is AcceleratedOptimizer and _wraps_fusedlr(item):
            expose(item)
    return prepared


def _wraps_fusedlr(optimizer) -> bool:
    try:
        unwrap(optimizer)
    except TypeError:
        return False
    return True


def _refuse_double_schedule(obj) -> None:
    if not isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
        return
    inner = getattr(obj, "optimizer", None)
    if not _wraps_fusedlr(inner):
        return
    scheduled = [i for i, g in enumerate(unwrap(inner).param_groups)
                 if g.get("schedule") is not None]
    if scheduled:
        raise ValueError(
            f"prepare: {type(obj).__name__} drives param groups {scheduled} of a "
            f"{type(unwrap(inner)).__name__} that already has a schedule on the device; the two "
            "would multiply. Pass no scheduler to accelerate (the fusedlr schedule advances once "
            "per real optimizer step by itself), or set those groups' schedule=None"
        )
