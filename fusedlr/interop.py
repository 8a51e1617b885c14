"""Leaving fusedlr: a state_dict that ``torch.optim.SGD/Adam/AdamW`` load and continue from.

``to_torch_state_dict(opt)`` converts a fused optimizer's state to the form torch's optimizer of
the same algorithm saves, so a run can move to ``torch.optim`` at any step and continue on the
same trajectory::

    sd = fusedlr.to_torch_state_dict(opt)          # fusedlr.AdamW -> torch.optim.AdamW
    topt = torch.optim.AdamW(model.parameters())
    topt.load_state_dict(sd)                        # then topt.step() as before

The coming back direction needs no helper: ``fusedlr.Adam.load_state_dict`` (``SGD`` likewise)
accepts a ``torch.optim.Adam``/``AdamW`` state_dict directly.

What carries over and what does not:

- State: SGD ``momentum_buffer`` (``None`` while momentum has not started, as torch saves it),
  Adam ``step`` (float32 CPU tensor, torch's non-capturable form), ``exp_avg``, ``exp_avg_sq`` and
  ``max_exp_avg_sq`` (amsgrad). Tensors are copies; fusedlr's live state is not shared.
- fp32 state of bf16/fp16 params: torch casts it to the param dtype on load (its own convention).
  ``master_weights`` copies are dropped: the params hold them rounded to nearest.
- Groups: every key torch's optimizer has (``foreach``, ``fused``, ``capturable``,
  ``differentiable``, ``decoupled_weight_decay`` ... at torch's defaults), the hyperparameters of
  the group, and ``lr`` = the lr the next ``step()`` would use (the schedule and any plateau
  scale evaluated at the current counter). For SGD/Adam with a schedule that cycles momentum,
  ``momentum`` / ``betas[0]`` is likewise the next step's value. The schedule itself has no torch
  equivalent inside an optimizer state_dict: torch continues at that constant lr unless the user
  attaches a torch scheduler.
"""

from __future__ import annotations

import math

import torch

from fusedlr.optim import SGD, AdamW, _FusedOptimizer

__all__ = ["to_torch_state_dict", "torch_optimizer_class"]

_SGD_KEYS = ("momentum", "dampening", "weight_decay", "nesterov", "maximize")
_ADAM_KEYS = ("betas", "eps", "weight_decay", "amsgrad", "maximize")


def torch_optimizer_class(opt: _FusedOptimizer) -> type[torch.optim.Optimizer]:
    """The ``torch.optim`` class whose state_dict ``to_torch_state_dict(opt)`` produces."""
    if not isinstance(opt, _FusedOptimizer):
        raise TypeError(f"expected a fusedlr optimizer, got {type(opt).__name__}")
    if isinstance(opt, SGD):
        return torch.optim.SGD
    return torch.optim.AdamW if isinstance(opt, AdamW) else torch.optim.Adam


def _torch_group_defaults(cls: type[torch.optim.Optimizer]) -> dict:
    """The keys and default values of a param group of torch's optimizer, from torch itself."""
    probe = cls([torch.zeros(1, requires_grad=True)], lr=1e-3)
    return {k: v for k, v in probe.param_groups[0].items() if k != "params"}


def to_torch_state_dict(opt: _FusedOptimizer) -> dict:
    """A state_dict for ``torch_optimizer_class(opt)`` built over the same params in the same order.

    Loading it and stepping continues the fused optimizer's trajectory (see the module docstring
    for what carries over). Reading the next lr syncs with the device once.
    """
    cls = torch_optimizer_class(opt)
    template = _torch_group_defaults(cls)
    own = _SGD_KEYS if opt._algorithm == "sgd" else _ADAM_KEYS
    lrs = [float(v) for v in opt.get_last_lr()]
    momenta = [float(v) for v in opt.get_last_momentum()]

    groups, state, index = [], {}, 0
    for gi, group in enumerate(opt.param_groups):
        out = dict(template)
        out.update({k: group[k] for k in own})
        out["lr"] = lrs[gi]
        if opt._algorithm == "sgd":
            if group["schedule"] is not None and group["schedule"].cycles_momentum():
                out["momentum"] = momenta[gi]
        else:
            out["betas"] = tuple(group["betas"])
            if group["schedule"] is not None and group["schedule"].cycles_momentum():
                if not math.isnan(momenta[gi]):
                    out["betas"] = (momenta[gi], out["betas"][1])
        ids = []
        for p in group["params"]:
            st = opt.state.get(p)
            if st:
                state[index] = _torch_param_state(opt, st)
            ids.append(index)
            index += 1
        out["params"] = ids
        groups.append(out)
    return {"state": state, "param_groups": groups}


def _copy(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone(memory_format=torch.contiguous_format)


def _torch_param_state(opt: _FusedOptimizer, st: dict) -> dict:
    if opt._algorithm == "sgd":
        buf = st.get("momentum_buffer")
        started = buf is not None and float(st["step"]) > 0
        return {"momentum_buffer": _copy(buf) if started else None}
    out = {
        "step": st["step"].detach().to("cpu", torch.float32, copy=True).reshape(()),
        "exp_avg": _copy(st["exp_avg"]),
        "exp_avg_sq": _copy(st["exp_avg_sq"]),
    }
    if st.get("max_exp_avg_sq") is not None:
        out["max_exp_avg_sq"] = _copy(st["max_exp_avg_sq"])
    return out
