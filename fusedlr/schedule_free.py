"""Schedule-free SGD and AdamW, fused and sync-free (Defazio et al. 2024, "The Road Less
Scheduled"), with the arguments and semantics of the ``schedulefree`` package (1.4).

The optimizer holds the train-mode point ``y`` in the params and keeps ``z`` (and AdamW's
``exp_avg_sq``) as state; the evaluation point ``x`` is reached by ``eval()``:
``y = (1 - beta) z + beta x`` with ``beta`` the momentum (SGD) / ``beta1`` (AdamW).
Step ``k`` (from 0) of each group, with ``grad`` the gradient at ``y``::

    lr_k    = schedule(lr, k) * min((k + 1) / warmup_steps, 1)      (schedule=None: lr)
    lr_max  = max(lr_max, lr_k)                                     (starts at -1)
    w_k     = (k + 1)**r * lr_max**weight_lr_power,   W_k = W_{k-1} + w_k
    c       = w_k / W_k  (0 when W_k == 0)
    AdamW:  v = beta2 v + (1 - beta2) grad**2;  grad = grad / (sqrt(v / (1 - beta2**(k+1))) + eps)
    grad    = grad + weight_decay * y                               (decay at y)
    y       = lerp(y, z, c) + lr_k (beta (1 - c) - 1) grad;   z = z - lr_k grad

All per-step scalars (``k``, ``lr_k``, ``lr_max``, ``W``, ``c``, the bias correction) live in
a float64 device tensor per device. A step is one ``fusedlr::schedule_free_update_`` call per
device: it checks every argument, advances the scalars (one device thread per group) and
updates every tensor of the device. A step reads no host value and is capturable.

``schedule=`` (any ``fusedlr.schedules`` spec) sets the lr of step ``k`` from the group's
``lr`` as for ``fusedlr.SGD``/``AdamW`` (``schedule(lr, k // steps_per_epoch)``, times
``group['lr_scale']``); it replaces the package's linear warmup (``warmup_steps`` must then be
0). Schedules that set momentum are refused:
schedule-free momentum is the interpolation weight of ``train()``/``eval()``.

``train()`` / ``eval()`` switch the params between ``y`` and ``x``, one fused
``fusedlr::schedule_free_swap_`` call per device, no host sync:
``train: p = lerp(p, z, 1 - beta)``, ``eval: p = lerp(p, z, 1 - 1/beta)``. As in the package, the
optimizer starts in eval mode, ``step()`` refuses to run unless ``train()`` was called, and
checkpoints should be taken in eval mode.

BatchNorm caveat (as in the package): running statistics collected in train mode were
computed at ``y``, not at the ``x`` that ``eval()`` installs. Before evaluating, recompute them
at ``x``::

    model.train(); opt.eval()
    with torch.no_grad():
        for batch in itertools.islice(train_loader, 50):
            model(batch)
    model.eval()

AMP: ``torch.amp.GradScaler`` uses its generic path for these optimizers (``unscale_``, then a
host check of ``found_inf``: one sync per step).

``param_groups[i]['k' | 'lr_max' | 'weight_sum' | 'scheduled_lr']`` are written back from the
device by ``state_dict()`` (one sync, at checkpoint time); ``device_scalars()`` returns the live
device tensor. State dicts load in both directions with ``schedulefree.SGDScheduleFree`` /
``AdamWScheduleFree`` (a group with a ``schedule`` has no counterpart there).
"""

from __future__ import annotations

import math
import numbers

import torch

from fusedlr import _C, ops
from fusedlr._arch_check import check_cuda_kernels
from fusedlr._device_state import (
    BASE_LR,
    DAMPENING,
    EPS,
    GROUP_FIELDS,
    GROUP_LR_SCALE,
    MOMENTUM,
    SCHEDULE_ROOT,
    STEPS_PER_EPOCH,
    WEIGHT_DECAY,
)
from fusedlr._step_hooks import hooked_step
from fusedlr._validate import check_param, check_unique, group_params
from fusedlr.schedules import ProgramBuilder, Schedule

# csrc/include/schedule_free.h: group-row fields and the device state row.
WARMUP_STEPS = 12
R = 13
WEIGHT_LR_POWER = 14
STATE_FIELDS = 8
K, LR_MAX, WEIGHT_SUM, LR, CKP1, BC2 = range(6)
_SCALAR_KEYS = (("k", K), ("lr_max", LR_MAX), ("weight_sum", WEIGHT_SUM), ("scheduled_lr", LR))

_NOT_TRAIN = ("Optimizer was not in train mode when step is called. Please insert .train() and "
              ".eval() calls on the optimizer. See documentation for details.")


def _real(value, what: str, low: float, high: float = math.inf, *, low_open=False,
          high_open=True) -> float:
    """A finite real in the range; TypeError / ValueError naming `what` and the range."""
    if isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a Python number, got a Tensor (fusedlr evaluates the lr "
                        "on the device: pass schedule=... for a varying lr)")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {value!r}")
    v = float(value)
    lo_ok = v > low if low_open else v >= low
    hi_ok = v < high if high_open else v <= high
    if not (lo_ok and hi_ok) or math.isnan(v) or math.isinf(v):
        lo = "(" if low_open else "["
        hi = ")" if high_open or math.isinf(high) else "]"
        raise ValueError(f"{what} must be a finite number in {lo}{low}, {high}{hi}, got {value!r}")
    return v


def _int(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{what} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_grad(p: torch.Tensor) -> None:
    g = p.grad
    if g.is_sparse:
        raise RuntimeError("schedule-free optimizers do not support sparse gradients")
    if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
        raise RuntimeError(f"grad is {g.dtype} {tuple(g.shape)} on {g.device} but the param is "
                           f"{p.dtype} {tuple(p.shape)} on {p.device}")


class _ScheduleFreeOptimizer(torch.optim.Optimizer):
    _adam = False

    def __init__(self, params, defaults, schedule, steps_per_epoch):
        defaults = dict(defaults, schedule=schedule, steps_per_epoch=steps_per_epoch, k=0,
                        train_mode=False, weight_sum=0.0, lr_max=-1.0, scheduled_lr=0.0)
        self._check_group(defaults, "defaults")
        self._ready = False
        self._devices: dict[torch.device, dict] = {}
        self._calls: dict = {}
        super().__init__(params, defaults)
        self._relayout()
        self._ready = True

    # -- validation ------------------------------------------------------------------------------
    def _beta(self, group: dict) -> float:
        return group["betas"][0] if self._adam else group["momentum"]

    def _check_group(self, group: dict, name: str) -> None:
        where = f"{type(self).__name__} {name}"
        _real(group["lr"], f"{where}: lr", 0.0)
        _real(group["weight_decay"], f"{where}: weight_decay", 0.0)
        if self._adam:
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                raise ValueError(f"{where}: betas must be a pair (beta1, beta2), got {betas!r}")
            _real(betas[0], f"{where}: betas[0]", 0.0, 1.0, low_open=True)
            _real(betas[1], f"{where}: betas[1]", 0.0, 1.0)
            _real(group["eps"], f"{where}: eps", 0.0)
        else:
            _real(group["momentum"], f"{where}: momentum", 0.0, 1.0, low_open=True)
        warmup = _int(group["warmup_steps"], f"{where}: warmup_steps", 0)
        _real(group["r"], f"{where}: r", 0.0)
        _real(group["weight_lr_power"], f"{where}: weight_lr_power", 0.0)
        _int(group["steps_per_epoch"], f"{where}: steps_per_epoch", 1)
        _int(group["k"], f"{where}: k", 0)
        _real(group["weight_sum"], f"{where}: weight_sum", 0.0)
        _real(group["lr_max"], f"{where}: lr_max", -1.0)
        sched = group["schedule"]
        if sched is not None:
            if not isinstance(sched, Schedule):
                raise TypeError(f"{where}: schedule must be a fusedlr.schedules spec or None, got "
                                f"{type(sched).__name__}")
            if warmup != 0:
                raise ValueError(f"{where}: warmup_steps must be 0 with a schedule (the schedule "
                                 f"replaces the linear warmup), got {warmup}")
            if sched.cycles_momentum():
                raise ValueError(f"{where}: schedule {sched!r} sets momentum, which schedule-free "
                                 "optimizers keep fixed (it is the train/eval interpolation)")

    def add_param_group(self, param_group: dict) -> None:
        params = group_params(param_group)
        index = len(self.param_groups)
        self._check_group({**self.defaults, **param_group}, f"param group {index}")
        for i, p in enumerate(params):
            check_param(p, i, index)
            if not p.is_contiguous():
                raise ValueError(f"param {i} of param group {index}: schedule-free optimizers "
                                 "need contiguous params (z is kept like the param)")
        check_unique(params, index)
        check_cuda_kernels(params, index)
        super().add_param_group({**param_group, "params": params})
        if self._ready:
            self._relayout()

    # -- device layout ---------------------------------------------------------------------------
    def _row(self, group: dict, root: int) -> tuple:
        row = [0.0] * GROUP_FIELDS
        row[BASE_LR] = float(group["lr"])
        row[WEIGHT_DECAY] = float(group["weight_decay"])
        row[MOMENTUM] = float(self._beta(group))
        row[DAMPENING] = float(group["betas"][1]) if self._adam else 0.0
        row[EPS] = float(group["eps"]) if self._adam else 0.0
        row[STEPS_PER_EPOCH] = float(group["steps_per_epoch"])
        row[SCHEDULE_ROOT] = float(root)
        row[GROUP_LR_SCALE] = float(group.get("lr_scale", 1.0)) if root >= 0 else 1.0
        row[WARMUP_STEPS] = float(group["warmup_steps"])
        row[R] = float(group["r"])
        row[WEIGHT_LR_POWER] = float(group["weight_lr_power"])
        return tuple(row)

    def _host_state_rows(self, groups) -> torch.Tensor:
        rows = torch.zeros(len(groups), STATE_FIELDS, dtype=torch.float64)
        for i, g in enumerate(groups):
            for key, col in _SCALAR_KEYS:
                rows[i, col] = float(g[key])
        return rows

    def _relayout(self, reload_state: bool = False) -> None:
        """Rebuilds program, rows and per-device tensors; keeps the device state of the old
        groups unless reload_state (then every row comes from the group dicts)."""
        builder = ProgramBuilder()
        self._roots = [builder.add(g["schedule"], i) for i, g in enumerate(self.param_groups)]
        program = builder.tensor()
        self._schedules = [g["schedule"] for g in self.param_groups]
        self._rows = [self._row(g, r) for g, r in zip(self.param_groups, self._roots,
                                                       strict=True)]
        host_rows = torch.tensor(self._rows, dtype=torch.float64).reshape(-1, GROUP_FIELDS)
        host_state = self._host_state_rows(self.param_groups)
        devices = {p.device for g in self.param_groups for p in g["params"]}
        devices = devices or {torch.device("cpu")}
        for dev in devices:
            old = self._devices.get(dev)
            state = host_state.to(dev)
            if old is not None and not reload_state:
                keep = min(old["state"].shape[0], state.shape[0])
                state[:keep].copy_(old["state"][:keep])
            if old is not None and old["state"].shape == state.shape:
                old["state"].copy_(state)  # in place: a captured graph keeps its pointers
                state = old["state"]
            params = [p for g in self.param_groups for p in g["params"] if p.device == dev]
            self._devices[dev] = {"program": program.to(dev), "hparams": host_rows.to(dev),
                                  "state": state, "params": params}
        for dev in [d for d in self._devices if d not in devices]:
            del self._devices[dev]
        self._group_index = {id(p): gi for gi, g in enumerate(self.param_groups)
                             for p in g["params"]}
        self._calls.clear()

    def _sync_groups(self) -> None:
        """Uploads changed hyperparameters (no read of device values)."""
        if len(self.param_groups) != len(self._rows) or any(
                g["schedule"] is not s for g, s in zip(self.param_groups, self._schedules,
                                                        strict=True)):
            for i, g in enumerate(self.param_groups):
                self._check_group(g, f"param group {i}")
            self._relayout()
            return
        changed = False
        for i, g in enumerate(self.param_groups):
            row = self._row(g, self._roots[i])
            if row != self._rows[i]:
                self._check_group(g, f"param group {i}")
                self._rows[i] = row
                changed = True
        if changed:
            host_rows = torch.tensor(self._rows, dtype=torch.float64)
            for ds in self._devices.values():
                ds["hparams"].copy_(host_rows, non_blocking=True)

    # -- state -----------------------------------------------------------------------------------
    def _init_state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if "z" not in state:
            state["z"] = torch.clone(p, memory_format=torch.preserve_format).detach()
        if self._adam and "exp_avg_sq" not in state:
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _call_for(self, dev, params):
        """(params, zs, exp_avg_sqs, groups) for these params of device dev, cached. The state
        of params that get a grad for the first time is created after their grads are checked
        (so a bad grad leaves the optimizer as it was)."""
        key = (dev, None if params is self._devices[dev]["params"] else tuple(map(id, params)))
        call = self._calls.get(key)
        if call is None:
            for p in params:
                _check_grad(p)
            states = [self._init_state(p) for p in params]
            zs = [s["z"] for s in states]
            vs = [s["exp_avg_sq"] for s in states] if self._adam else []
            groups = torch.tensor([self._group_index[id(p)] for p in params], dtype=torch.int64)
            call = (list(params), zs, vs, groups)
            self._calls[key] = call
        return call

    @hooked_step  # torch's step hooks; a profiler range only while a profiler runs
    def step(self, closure=None):
        """One schedule-free step of every param with a grad: no host sync."""
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError(_NOT_TRAIN)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            self._sync_groups()
        compiling = torch.compiler.is_compiling()
        for dev, ds in self._devices.items():
            native = None if compiling else self._calls.get(("native", dev))
            # The C++ eager step (its op runs below autograd): every param had a grad.
            if native is None or not native.step(ds["program"], ds["hparams"], ds["state"]):
                with torch.no_grad():
                    self._step_lists(dev, ds, compiling)
        return loss

    def _step_lists(self, dev, ds, compiling: bool) -> None:
        """The general step of one device: grads gathered in Python, lists passed to the op
        (the first step, torch.compile, DTensors, and params without grads)."""
        params, grads = [], []
        for p in ds["params"]:
            g = p.grad
            if g is not None:
                params.append(p)
                grads.append(g)
        full = len(params) == len(ds["params"])
        if full:
            params = ds["params"]
        # The op checks every tensor before it writes anything (state included).
        params, zs, vs, groups = self._call_for(dev, params)
        ops.schedule_free_update_(params, grads, zs, vs, groups, ds["program"], ds["hparams"],
                                  ds["state"])
        if full and not compiling and params and not any(hasattr(p, "to_local") for p in params):
            # Every param had a grad: later steps read the grads in C++ (EagerScheduleFree,
            # csrc/eager_schedule_free.cpp) and call the same op. Dropped by _relayout.
            self._calls[("native", dev)] = _C.EagerScheduleFree(params, zs, vs, groups)

    @torch.no_grad()
    def _switch(self, to_train: bool) -> None:
        self._sync_groups()
        by_device: dict = {}
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            for p in group["params"]:
                z = self.state[p].get("z") if p in self.state else None
                if z is not None:
                    by_device.setdefault(p.device, ([], []))
                    by_device[p.device][0].append(p)
                    by_device[p.device][1].append(z)
            group["train_mode"] = to_train
        for dev, (params, zs) in by_device.items():
            groups = torch.tensor([self._group_index[id(p)] for p in params], dtype=torch.int64)
            ops.schedule_free_swap_(params, zs, groups, self._devices[dev]["hparams"], to_train)

    def train(self) -> None:
        """Params to the train point y = (1 - beta) z + beta x (one fused op per device)."""
        self._switch(True)

    def eval(self) -> None:
        """Params to the evaluation point x (one fused op per device)."""
        self._switch(False)

    def device_scalars(self) -> torch.Tensor:
        """The float64 device tensor [groups, 8] of the first device: per group (k, lr_max,
        weight_sum, lr of the last step, c of the last step, bias correction of the last step)."""
        return self._devices[next(iter(self._devices))]["state"]

    # -- state_dict ------------------------------------------------------------------------------
    def _publish_scalars(self) -> None:
        """Writes the device scalars back into the group dicts (a device-to-host read)."""
        rows = self.device_scalars().detach().to("cpu", torch.float64)
        for i, g in enumerate(self.param_groups):
            g["k"] = int(rows[i, K])
            g["lr_max"] = float(rows[i, LR_MAX])
            g["weight_sum"] = float(rows[i, WEIGHT_SUM])
            g["scheduled_lr"] = float(rows[i, LR])

    def state_dict(self) -> dict:
        """torch's format plus the schedulefree package's group keys (one sync: see module)."""
        self._publish_scalars()
        return super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads ours or a schedulefree package optimizer's; per-param state tensors keep
        their identity (copied into), so a captured CUDA graph stays valid."""
        previous = [dict(g) for g in self.param_groups]
        saved = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if isinstance(saved, list) and len(saved) == len(previous):
            for i, g in enumerate(saved):  # checked before anything is loaded
                if isinstance(g, dict):
                    self._check_group({**previous[i], **g}, f"loaded param group {i}")
        before = {p: {k: v for k, v in st.items() if isinstance(v, torch.Tensor)}
                  for p, st in self.state.items()}
        super().load_state_dict(state_dict)
        for i, g in enumerate(self.param_groups):
            for key, value in previous[i].items():
                g.setdefault(key, value)  # e.g. schedule, steps_per_epoch from a package dict
            g["k"] = int(g["k"])
        for p, tensors in before.items():
            st = self.state[p]
            for key, old in tensors.items():
                new = st.get(key)
                if (isinstance(new, torch.Tensor) and new is not old and new.shape == old.shape
                        and new.dtype == old.dtype and new.device == old.device):
                    old.copy_(new)
                    st[key] = old
        self._relayout(reload_state=True)


class SGDScheduleFree(_ScheduleFreeOptimizer):
    """Schedule-free SGD (``schedulefree.SGDScheduleFree``'s arguments), fused and sync-free.

    ``momentum`` in (0, 1) is the interpolation ``beta``; ``weight_decay`` adds
    ``weight_decay * y`` to the gradient. ``foreach`` is accepted for the package's signature
    and ignored (the step is always fused). See the module docstring for the formulas.
    """

    def __init__(self, params, lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0,
                 weight_lr_power=2.0, foreach=None, *, schedule=None, steps_per_epoch=1):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        warmup_steps=warmup_steps, r=r, weight_lr_power=weight_lr_power,
                        foreach=foreach)
        super().__init__(params, defaults, schedule, steps_per_epoch)


class AdamWScheduleFree(_ScheduleFreeOptimizer):
    """Schedule-free AdamW (``schedulefree.AdamWScheduleFree``'s arguments), fused and
    sync-free. ``betas[0]`` in (0, 1) is the interpolation ``beta``; weight decay is applied at
    ``y`` after the Adam normalisation. ``foreach`` is accepted and ignored, as for
    ``SGDScheduleFree``. See the module docstring for the formulas.
    """

    _adam = True

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0, foreach=None, *, schedule=None,
                 steps_per_epoch=1):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas,
                        eps=eps, weight_decay=weight_decay, warmup_steps=warmup_steps, r=r,
                        weight_lr_power=weight_lr_power, foreach=foreach)
        super().__init__(params, defaults, schedule, steps_per_epoch)
