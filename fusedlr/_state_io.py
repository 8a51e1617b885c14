"""state_dict / load_state_dict of the fused optimizers.

The saved form is torch's (``state`` keyed by param index, ``param_groups``)
plus a ``fusedlr`` entry holding the schedule counter and the per-group plateau
scale. Schedules are saved as plain dicts (``Schedule.to_dict``), so no lambda is
pickled. Loading validates everything first, then copies into the existing
tensors (a captured CUDA graph keeps its pointers).

Also accepted: ``torch.optim`` state_dicts of the same algorithm (no ``fusedlr`` entry: the
counter and schedules stay as they are, the groups take torch's lr). A state_dict of another
optimizer type is refused, by the ``fusedlr`` entry or by the group keys (``momentum`` for SGD,
``betas`` for Adam; ``decoupled_weight_decay`` tells torch's Adam from AdamW).

``master_weights``: the fp32 masters are saved as ``state[i]['master']``. An optimizer without
``master_weights`` ignores them (its params hold them rounded); an optimizer with it drops a
master the state_dict lacks, so the next step copies it from the param again.
"""

from __future__ import annotations

import torch

from fusedlr.schedules import Schedule, from_dict

FORMAT = 1
_LOW = (torch.bfloat16, torch.float16)


def optimizer_state_dict(opt, base: dict) -> dict:
    for group in base["param_groups"]:
        sched = group.get("schedule")
        group["schedule"] = sched.to_dict() if isinstance(sched, Schedule) else None
    ds = next(iter(opt._devices.values()))
    base["fusedlr"] = {
        "format": FORMAT,
        "optimizer": type(opt).__name__,
        "counter": ds.counter.detach().to("cpu", copy=True),
        "lr_scale": ds.lr_scale.detach().to("cpu", copy=True),
    }
    return base


_STATE_KEYS = {
    "sgd": {"step", "momentum_buffer", "master"},
    "adam": {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "master"},
}
# A group key only one algorithm has: tells a torch state_dict's optimizer type.
_GROUP_MARKERS = {"sgd": "momentum", "adam": "betas"}


def _saved_algorithm(group: dict) -> str | None:
    for algorithm, key in _GROUP_MARKERS.items():
        if key in group:
            return algorithm
    return None


def _compatible(saved: str, mine: str) -> bool:
    return saved == mine or {saved, mine} <= {"Adam", "AdamW"}


def load_optimizer_state(opt, state_dict: dict) -> None:
    name = type(opt).__name__
    if not isinstance(state_dict, dict) or not {"param_groups", "state"} <= state_dict.keys():
        raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups'")
    extra = state_dict.get("fusedlr")
    if extra is not None and not _compatible(extra.get("optimizer", ""), name):
        raise ValueError(
            f"{name}.load_state_dict: the state_dict was saved by {extra.get('optimizer')}, "
            f"not {name}"
        )
    saved_groups = state_dict["param_groups"]
    groups = opt.param_groups
    if len(saved_groups) != len(groups):
        raise ValueError(
            f"{name}.load_state_dict: the state_dict has {len(saved_groups)} param groups, the "
            f"optimizer {len(groups)}"
        )
    for i, (sg, g) in enumerate(zip(saved_groups, groups, strict=True)):
        saved_algo = _saved_algorithm(sg)
        if saved_algo is not None and saved_algo != opt._algorithm:
            raise ValueError(
                f"{name}.load_state_dict: param group {i} of the state_dict has "
                f"'{_GROUP_MARKERS[saved_algo]}', so it is a state_dict of another optimizer type "
                f"({saved_algo.upper() if saved_algo == 'sgd' else 'Adam/AdamW'}), not {name}"
            )
        decoupled = sg.get("decoupled_weight_decay")
        if decoupled is not None and bool(decoupled) != bool(opt._decoupled):
            raise ValueError(
                f"{name}.load_state_dict: param group {i} was saved with "
                f"decoupled_weight_decay={bool(decoupled)} (torch.optim."
                f"{'AdamW' if decoupled else 'Adam'}); load it into fusedlr."
                f"{'AdamW' if decoupled else 'Adam'}"
            )
        if len(sg["params"]) != len(g["params"]):
            raise ValueError(
                f"{name}.load_state_dict: param group {i} has {len(sg['params'])} params in the "
                f"state_dict and {len(g['params'])} in the optimizer"
            )
    id_map = {
        old: p
        for sg, g in zip(saved_groups, groups, strict=True)
        for old, p in zip(sg["params"], g["params"], strict=True)
    }
    allowed = _STATE_KEYS[opt._algorithm]
    for key, st in state_dict["state"].items():
        if key not in id_map:
            raise ValueError(f"{name}.load_state_dict: state for unknown param id {key!r}")
        p = id_map[key]
        unknown = set(st) - allowed
        if unknown:
            raise ValueError(
                f"{name}.load_state_dict: state of param {key} has keys {sorted(unknown)} that "
                f"{name} does not use (a state_dict of another optimizer type?)"
            )
        for k, v in st.items():
            if k == "step" or v is None:
                continue
            if not isinstance(v, torch.Tensor) or v.shape != p.shape:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ValueError(
                    f"{name}.load_state_dict: state '{k}' of param {key} has shape {shape}, the "
                    f"param {tuple(p.shape)}"
                )
    new_groups = []
    for sg, g in zip(saved_groups, groups, strict=True):
        merged = {**sg, "params": g["params"]}
        sched = merged.get("schedule")
        merged["schedule"] = from_dict(sched) if isinstance(sched, dict) else sched
        merged.setdefault("steps_per_epoch", g.get("steps_per_epoch", 1))
        for k in ("initial_lr",):
            if k in g and k not in merged:
                merged[k] = g[k]
        new_groups.append({k: v for k, v in merged.items() if k in g or k in opt.defaults})
    from fusedlr._validate import check_group

    for i, g in enumerate(new_groups):
        full = {**opt.defaults, **g}
        check_group(name, full, opt._algorithm, name=f"param group {i} of the state_dict")

    # -- everything is valid: apply ---------------------------------------------------------------
    for g, ng in zip(groups, new_groups, strict=True):
        g.update(ng)
    for key, st in state_dict["state"].items():
        p = id_map[key]
        _load_param_state(opt, p, st)
    if getattr(opt, "master_weights", False):
        # A master not in the state_dict is stale: drop it, the next step copies the param.
        saved_master = {
            id(id_map[k]) for k, st in state_dict["state"].items() if st.get("master") is not None
        }
        for group in groups:
            for p in group["params"]:
                if id(p) not in saved_master:
                    opt.state.get(p, {}).pop("master", None)
    opt._relayout()
    if extra is not None:
        for ds in opt._devices.values():
            ds.counter.copy_(extra["counter"].reshape(1))
            if extra["lr_scale"].numel() == ds.lr_scale.numel():
                ds.lr_scale.copy_(extra["lr_scale"])
        # The host mirror (fusedlr/_host_lr.py) follows: the counter and plateau factors saved.
        opt._host.count = int(extra["counter"].reshape(-1)[0])
        if extra["lr_scale"].numel() == opt._host_lr_scale.numel():
            opt._host_lr_scale.copy_(extra["lr_scale"].detach().to("cpu", torch.float64))
        opt._host_mirror_exact()


def _load_param_state(opt, p: torch.Tensor, saved: dict) -> None:
    """Copies saved state into the param's state tensors (created if missing)."""
    state = opt.state[p]
    dt = torch.float64 if p.dtype == torch.float64 else torch.float32
    for k, v in saved.items():
        if k == "step":
            step = float(v) if not isinstance(v, torch.Tensor) else v.detach().float().reshape(())
            if "step" in state:
                state["step"].copy_(torch.as_tensor(step, dtype=torch.float32))
            else:
                state["step"] = torch.as_tensor(step, dtype=torch.float32).to(p.device).clone()
            continue
        if v is None:
            continue
        if k == "master" and not (getattr(opt, "master_weights", False) and p.dtype in _LOW):
            continue  # saved with master_weights=True: the param holds the rounded master
        v = v.detach()
        if isinstance(state.get(k), torch.Tensor) and state[k].shape == p.shape:
            state[k].copy_(v)
        elif hasattr(p, "to_local"):  # a DTensor param: the saved DTensor, moved
            state[k] = v.to(device=p.device, dtype=dt, copy=True).contiguous()
        else:  # in the param's layout when it is dense (as the optimizer allocates state)
            state[k] = torch.empty_like(p.detach(), dtype=dt, memory_format=torch.preserve_format)
            state[k].copy_(v)
    if opt._algorithm == "sgd" and "step" not in saved:
        # torch's SGD keeps no step: a saved buffer means momentum has started.
        has_buf = saved.get("momentum_buffer") is not None
        state["step"] = torch.full((), float(has_buf), dtype=torch.float32, device=p.device)
    if opt._algorithm == "adam" and "step" not in state:
        state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
