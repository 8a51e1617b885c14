"""Checks of optimizer arguments, raised before any state changes, worded as torch's."""

from __future__ import annotations

import math
import numbers

import torch

from fusedlr import ops  # noqa: F401  (the ops must exist before Sparse* kernels are added)
from fusedlr.schedules import Schedule

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _number(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        raise TypeError(
            f"{what} must be a Python number, got a Tensor; fusedlr evaluates the schedule on the "
            "device, so pass schedule=... instead of a Tensor lr"
        )
    if isinstance(value, Schedule):
        raise TypeError(
            f"{what} must be a number, got the schedule {value!r}; pass it as schedule=... "
            "(lr is then its base lr)"
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {value!r}")
    return float(value)


def _nonneg(value, message: str, what: str) -> float:
    """A finite number >= 0; ValueError worded as torch's ``message: value`` otherwise."""
    v = _number(value, what)
    if not (0.0 <= v) or math.isinf(v):
        raise ValueError(f"{message}: {value}")
    return v


def check_group(owner: str, group: dict, algorithm: str, name: str) -> None:
    """Validates the hyperparameters of a (merged) param group dict."""
    where = f"{owner} {name}"
    _nonneg(group["lr"], f"Invalid learning rate ({where})", f"{where}: lr")
    _nonneg(group["weight_decay"], f"Invalid weight_decay value ({where})",
            f"{where}: weight_decay")
    for flag in ("maximize",) + (("nesterov",) if algorithm == "sgd" else ("amsgrad",)):
        if not isinstance(group[flag], bool):
            raise TypeError(f"{where}: {flag} must be a bool, got {group[flag]!r}")
    if algorithm == "sgd":
        momentum = _nonneg(group["momentum"], f"Invalid momentum value ({where})",
                           f"{where}: momentum")
        dampening = _number(group["dampening"], f"{where}: dampening")
        if math.isnan(dampening) or math.isinf(dampening):
            raise ValueError(f"Invalid dampening value ({where}): {dampening}")
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening ({where})")
    else:
        _nonneg(group["eps"], f"Invalid epsilon value ({where})", f"{where}: eps")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{where}: betas must be a pair of numbers, got {betas!r}")
        for i, b in enumerate(betas):
            v = _number(b, f"{where}: betas[{i}]")
            if not 0.0 <= v < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i} ({where}): {b}")
    sched = group["schedule"]
    if sched is not None and not isinstance(sched, Schedule):
        if isinstance(sched, (numbers.Real, torch.Tensor)):
            hint = "; a constant lr goes in lr=..."
        elif callable(sched):
            hint = "; wrap a Python function as fusedlr.schedules.LambdaLR(fn, total_steps=...)"
        elif isinstance(sched, torch.optim.lr_scheduler.LRScheduler):
            hint = "; use the fusedlr.schedules class of the same name (no optimizer argument)"
        else:
            hint = ""
        raise TypeError(
            f"{where}: schedule must be a fusedlr.schedules spec or None, got "
            f"{type(sched).__name__}{hint}"
        )
    if "lr_scale" in group:  # the group's own lr factor (timm's layer decay)
        _nonneg(group["lr_scale"], f"Invalid lr_scale ({where}, must be a finite number >= 0)",
                f"{where}: lr_scale")
    spe = group["steps_per_epoch"]
    if isinstance(spe, bool) or not isinstance(spe, numbers.Integral):
        raise TypeError(f"{where}: steps_per_epoch must be an integer, got {spe!r}")
    if spe < 1:
        raise ValueError(f"{where}: steps_per_epoch must be >= 1, got {spe}")


def check_param(p, index: int, group_index: int) -> None:
    where = f"param {index} of param group {group_index}"
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{where}: optimizer can only optimize Tensors, got {type(p).__name__}")
    if p.dtype not in _FLOAT_DTYPES:
        hint = " (view complex params as real with torch.view_as_real)" if p.is_complex() else ""
        raise TypeError(
            f"{where}: fusedlr supports float32, float64, bfloat16 and float16 params, got "
            f"{p.dtype}{hint}"
        )
    if p.is_sparse:
        raise TypeError(f"{where}: sparse params are not supported")
    if torch._debug_has_internal_overlap(p) == 1:  # MemOverlap::Yes, e.g. an expand()ed tensor
        raise ValueError(
            f"{where}: several elements share one memory location (an expand()ed tensor?); "
            "an in-place update cannot be applied to it (torch fails at step()): clone() it"
        )


def check_unique(params, group_index: int) -> None:
    """torch only warns about a tensor listed twice in one group (and updates it twice); the
    fused kernel would update both entries concurrently, so fusedlr refuses it."""
    seen: dict[int, int] = {}
    for i, p in enumerate(params):
        j = seen.setdefault(id(p), i)
        if j != i:
            raise ValueError(
                f"param group {group_index} lists the same tensor twice (params {j} and {i}); "
                "torch warns and would update it twice per step, fusedlr refuses it"
            )


def _refuse_sparse(op: str):
    def kernel(params, grads, *args):
        i = next((k for k, g in enumerate(grads) if g.layout != torch.strided), 0)
        raise RuntimeError(
            f"{op}: grads[{i}] is sparse ({grads[i].layout}); fusedlr does not support sparse "
            "gradients (torch's fused optimizers neither): use dense grads, e.g. "
            "nn.Embedding(sparse=False)"
        )

    return kernel


# A sparse grad makes the dispatcher look for a Sparse* kernel of the update ops, before any C++
# check runs; these say so clearly instead of "Could not run ... from the 'SparseCPU' backend".
_sparse_lib = torch.library.Library("fusedlr", "IMPL")
for _op in ("sgd_update_", "adam_update_"):
    for _key in ("SparseCPU", "SparseCUDA"):
        _sparse_lib.impl(_op, _refuse_sparse(_op), _key)


def check_torch_flags(owner: str, **flags) -> None:
    """torch.optim's implementation switches, accepted so that code and framework factories
    written for torch work unchanged: fusedlr is always fused, and always capturable (every
    tensor a step touches is allocated once), so ``foreach`` / ``fused`` / ``capturable`` have
    no effect. ``differentiable=True`` (autograd through the step) is refused."""
    for name, value in flags.items():
        allowed_none = name in ("foreach", "fused")
        if not (isinstance(value, bool) or (allowed_none and value is None)):
            kinds = "None, True or False" if allowed_none else "True or False"
            raise TypeError(f"{owner}: {name} must be {kinds}, got {value!r}")
    if flags.get("differentiable"):
        raise ValueError(
            f"{owner}: differentiable=True is not supported: fusedlr's step is one fused "
            "in-place kernel with no autograd formula, so gradients cannot flow through it; use "
            "torch.optim with differentiable=True for that (foreach, fused and capturable are "
            "accepted and have no effect: fusedlr is always fused and capturable)"
        )


def group_params(param_group) -> list:
    """The params of an ``add_param_group`` argument as a list, refused as torch refuses them."""
    if not isinstance(param_group, dict):
        raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
    params = param_group.get("params")
    if isinstance(params, torch.Tensor):
        return [params]
    if isinstance(params, set):
        raise TypeError("optimizer parameters need to be organized in ordered collections")
    return list(params) if params is not None else []
