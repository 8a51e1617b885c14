"""Coming from torch in one call: ``fusedlr.from_torch(optimizer, scheduler)``.

Turns a ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` (and its ``torch.optim.lr_scheduler``, if
any), at any point of a run, into the fused optimizer that continues the same trajectory::

    opt = fusedlr.from_torch(opt, sched)            # then: opt.step(), no sched.step()

The fused optimizer holds the same param tensors in the same groups, with the same
hyperparameters and a copy of the per-param state (momentum buffers, ``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq``, ``step``); the scheduler becomes each group's ``schedule``
(``fusedlr.schedules.from_torch``, which checks it against torch and refuses a tree whose torch
behaviour the closed form does not follow), each group's ``lr`` becomes torch's base lr
(``initial_lr``; fusedlr's group lr is the base, torch's the current one) and the schedule
counter is set to where the torch scheduler is. Stop using the torch optimizer and scheduler
afterwards: both still point at the params.
"""

from __future__ import annotations

import warnings

import torch

from fusedlr.diagnostics import user_stacklevel
from fusedlr.optim import SGD, Adam, AdamW
from fusedlr.schedules import ConversionError, ConversionWarning
from fusedlr.schedules import from_torch as schedule_from_torch
from fusedlr.schedules._base import check_bool, check_int

__all__ = ["from_torch"]

_SGD_KEYS = ("dampening", "weight_decay", "nesterov", "maximize")
_ADAM_KEYS = ("eps", "weight_decay", "amsgrad", "maximize")
# group keys torch's optimizers and schedulers own: not carried into the fused groups
_TORCH_KEYS = {
    "params", "lr", "momentum", "betas", "initial_lr", "max_lr", "min_lr", "base_momentum",
    "max_momentum", "foreach", "fused", "capturable", "differentiable",
    "decoupled_weight_decay", "lr_scale", *_SGD_KEYS, *_ADAM_KEYS,
}


def from_torch(optimizer, scheduler=None, *, total_steps: int | None = None,
               steps_per_epoch: int = 1, step_in_epoch: int = 0, check_steps: int | None = None,
               strict: bool = True, master_weights: bool = False,
               skip_schedule_on_inf: bool = False):
    """The fused optimizer (``fusedlr.SGD`` / ``Adam`` / ``AdamW``) that continues ``optimizer``
    and ``scheduler`` (``torch.optim.lr_scheduler``, or None for a constant lr per group).

    ``total_steps``, ``steps_per_epoch``, ``step_in_epoch``, ``check_steps`` and ``strict`` are
    those of ``fusedlr.schedules.from_torch`` (``total_steps`` is required for LambdaLR /
    MultiplicativeLR; by default a tree that would not follow torch is refused with a
    ``ConversionError`` naming the child and the step, ``strict=False`` warns instead).
    ``steps_per_epoch`` becomes the fused optimizer's. ``master_weights`` and
    ``skip_schedule_on_inf`` are passed to the fused optimizer.

    Everything is checked before anything is built; the torch optimizer and scheduler are only
    read.
    """
    cls = _fused_class(optimizer)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1, owner="from_torch")
    check_int("step_in_epoch", step_in_epoch, 0, steps_per_epoch - 1, owner="from_torch")
    if total_steps is not None:
        check_int("total_steps", total_steps, 1, owner="from_torch")
    if check_steps is not None:
        check_int("check_steps", check_steps, 0, owner="from_torch")
    check_bool("strict", strict, owner="from_torch")
    check_bool("master_weights", master_weights, owner="from_torch")
    check_bool("skip_schedule_on_inf", skip_schedule_on_inf, owner="from_torch")
    for i, group in enumerate(optimizer.param_groups):
        if group.get("differentiable"):
            raise ConversionError(
                f"from_torch: param group {i} has differentiable=True; fusedlr's fused step has "
                "no autograd formula (keep torch.optim for differentiable optimization)"
            )
    groups = optimizer.param_groups
    if scheduler is None:
        conv = None
        if any("initial_lr" in g for g in groups):
            warnings.warn(
                "from_torch: the optimizer's param groups have 'initial_lr', so a torch "
                "lr_scheduler is attached, but scheduler=None: the fused optimizer keeps each "
                "group's current lr. Pass the scheduler to carry the schedule over.",
                ConversionWarning, stacklevel=user_stacklevel(),
            )
    else:
        owner = getattr(scheduler, "optimizer", None)
        if owner is not optimizer:
            raise ConversionError(
                "from_torch: the scheduler belongs to another optimizer "
                f"({type(owner).__name__} at {id(owner):#x}), not the one given"
            )
        conv = schedule_from_torch(scheduler, total_steps=total_steps,
                                   steps_per_epoch=steps_per_epoch, step_in_epoch=step_in_epoch,
                                   check_steps=check_steps, strict=strict)

    fused_groups = [_fused_group(cls, g, i, conv) for i, g in enumerate(groups)]
    defaults = _defaults(cls, optimizer.defaults)
    fused = cls(fused_groups, **defaults, steps_per_epoch=steps_per_epoch,
                master_weights=master_weights, skip_schedule_on_inf=skip_schedule_on_inf)
    saved = fused.state_dict()
    saved["state"] = optimizer.state_dict()["state"]  # torch's form, same param order
    if conv is not None:
        saved["fusedlr"]["counter"] = torch.tensor([conv.counter], dtype=torch.int64)
    fused.load_state_dict(saved)
    return fused


def _fused_class(optimizer):
    if type(optimizer) is torch.optim.SGD:
        return SGD
    if type(optimizer) is torch.optim.AdamW:
        return AdamW
    if type(optimizer) is torch.optim.Adam:
        decoupled = any(g.get("decoupled_weight_decay") for g in optimizer.param_groups)
        return AdamW if decoupled else Adam
    raise ConversionError(
        f"from_torch: optimizer must be a torch.optim.SGD, Adam or AdamW (fusedlr's fused "
        f"algorithms), got {type(optimizer).__module__}.{type(optimizer).__name__}"
    )


def _num(v):
    return float(v) if isinstance(v, torch.Tensor) else v


def _fused_group(cls, group: dict, index: int, conv) -> dict:
    out = {"params": group["params"]}
    keys = _SGD_KEYS if cls is SGD else _ADAM_KEYS
    out.update({k: _num(group[k]) for k in keys})
    momentum = None
    if conv is None:
        out["lr"] = float(_num(group["lr"]))
        out["schedule"] = None
    else:
        out["lr"] = conv.base_lrs[index]
        out["schedule"] = conv.schedules[index]
        momentum = conv.momenta[index]
    if cls is SGD:
        out["momentum"] = float(_num(group["momentum"]) if momentum is None else momentum)
    else:
        beta1, beta2 = (float(_num(b)) for b in group["betas"])
        out["betas"] = (beta1 if momentum is None else momentum, beta2)
    out.update({k: v for k, v in group.items() if k not in _TORCH_KEYS})  # the user's own keys
    return out


def _defaults(cls, defaults: dict) -> dict:
    keys = ("lr", "momentum") + _SGD_KEYS if cls is SGD else ("lr", "betas") + _ADAM_KEYS
    out = {k: _num(defaults[k]) for k in keys if k in defaults}
    if "betas" in out:
        out["betas"] = tuple(float(_num(b)) for b in out["betas"])
    return out
