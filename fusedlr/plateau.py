"""``ReduceLROnPlateau`` whose whole state lives on the device: ``step(metric)`` never syncs.

torch's ``ReduceLROnPlateau.step`` calls ``float(metric)`` (a device sync) and branches on it in
Python. Here the best value, the bad-epoch count, the cooldown counter and each group's lr factor
are device tensors, updated in place with tensor ops (``torch.where``), so ``step(metric)`` can run
asynchronously, inside ``torch.compile`` and inside a captured CUDA graph.

The reduction is stored in the optimizer's per-group ``lr_scale`` (the factor that multiplies the
scheduled lr in the kernel), not in ``group['lr']``: ``group['lr']`` stays the base lr, and a
group's schedule keeps running underneath, scaled by the plateau's factor.
"""

from __future__ import annotations

import math
import numbers

import torch

from fusedlr import ops
from fusedlr._host_lr import PLATEAU

__all__ = ["ReduceLROnPlateau"]

_HYPER = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")
_STATE = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")


def _real(name: str, value, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"ReduceLROnPlateau: {name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or math.isinf(v) or (minimum is not None and v < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"ReduceLROnPlateau: {name} must be a finite number{bound}, got {value!r}")
    return v


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ReduceLROnPlateau: {name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"ReduceLROnPlateau: {name} must be >= 0, got {value!r}")
    return int(value)


def _check_hyper(mode, factor, patience, threshold, threshold_mode, cooldown, eps) -> dict:
    if mode not in ("min", "max"):
        raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
    if threshold_mode not in ("rel", "abs"):
        raise ValueError(
            f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
        )
    factor = _real("factor", factor, minimum=0.0)
    if factor >= 1.0:
        raise ValueError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor!r}")
    return {
        "mode": mode,
        "factor": factor,
        "patience": _count("patience", patience),
        "threshold": _real("threshold", threshold, minimum=0.0),
        "threshold_mode": threshold_mode,
        "cooldown": _count("cooldown", cooldown),
        "eps": _real("eps", eps, minimum=0.0),
    }


def _check_min_lrs(min_lr, n_groups: int) -> tuple[list[float], float | None]:
    if isinstance(min_lr, (list, tuple)):
        if len(min_lr) != n_groups:
            raise ValueError(
                f"ReduceLROnPlateau: min_lr has {len(min_lr)} entries, the optimizer {n_groups} "
                "param groups"
            )
        return [_real(f"min_lr[{i}]", v, minimum=0.0) for i, v in enumerate(min_lr)], None
    v = _real("min_lr", min_lr, minimum=0.0)
    return [v] * n_groups, v


class ReduceLROnPlateau:
    """Reduces each group's lr by ``factor`` when ``metric`` stops improving, on the device.

    Arguments and semantics are torch's ``torch.optim.lr_scheduler.ReduceLROnPlateau``: a metric
    is better than ``best`` when ``metric < best * (1 - threshold)`` (``min``/``rel``),
    ``metric < best - threshold`` (``min``/``abs``), ``metric > best * (1 + threshold)``
    (``max``/``rel``) or ``metric > best + threshold`` (``max``/``abs``). After more than
    ``patience`` bad epochs (bad epochs during a cooldown are ignored) every group's lr becomes
    ``new_lr = max(lr * factor, min_lr[g])`` if ``lr - new_lr > eps``, and a cooldown of
    ``cooldown`` epochs starts.

    ``lr`` is the lr the optimizer's next ``step()`` will use (schedule and previous reductions
    included). The reduction is stored as the group's lr factor (``lr_scale[g] = new_lr /
    schedule_lr``) so it composes with a group's schedule: the schedule keeps running, multiplied
    by the factor. ``group['lr']`` is not written.

    Differences from torch, all because nothing may wait for the host:

    * ``best``, ``num_bad_epochs``, ``cooldown_counter`` and ``last_epoch`` are 0-dim device
      tensors (read them with ``.item()`` when you want a host value; that syncs): read-only
      views of one-element state tensors, which ``state_dict()`` saves as 0-dim CPU tensors.
    * ``get_last_lr()`` returns 0-dim float64 device tensors (the lrs the next step uses).
    * ``step(metric)`` takes a 0-dim (or one-element) tensor on any device, or a Python number.
      Inside a captured CUDA graph pass a tensor: a Python number is baked into the graph.
    * ``optimizer`` must be a fusedlr optimizer; its state tensors are allocated here once and
      updated in place (CUDA-graph safe), ``load_state_dict`` included.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        if not hasattr(optimizer, "_devices") or not hasattr(optimizer, "_sync_groups"):
            raise TypeError(
                f"ReduceLROnPlateau: optimizer must be a fusedlr optimizer (SGD, Adam, AdamW), got "
                f"{type(optimizer).__name__}; use torch.optim.lr_scheduler.ReduceLROnPlateau for "
                "torch's optimizers"
            )
        hyper = _check_hyper(mode, factor, patience, threshold, threshold_mode, cooldown, eps)
        self.optimizer = optimizer
        optimizer._host.blockers.add(PLATEAU)  # get_host_lr: the lr is now decided on the device
        self.__dict__.update(hyper)
        n_groups = len(optimizer.param_groups)
        self.min_lrs, self.default_min_lr = _check_min_lrs(min_lr, n_groups)

        device = next(iter(optimizer._devices))
        self.device = device
        worse = math.inf if self.mode == "min" else -math.inf
        # One-element 1-D tensors, not 0-dim: torch.compile on torch 2.11-2.13 drops in-place
        # writes to 0-dim tensors that are not arguments of the compiled function (a compiled
        # step() then cut the lr one step early). The public 0-dim names are views of these.
        self._best = torch.full((1,), worse, dtype=torch.float64, device=device)
        self._num_bad_epochs = torch.zeros(1, dtype=torch.int64, device=device)
        self._cooldown_counter = torch.zeros(1, dtype=torch.int64, device=device)
        self._last_epoch = torch.zeros(1, dtype=torch.int64, device=device)
        self._metric = torch.zeros(1, dtype=torch.float64, device=device)
        self._allocate_groups(n_groups)

    def _allocate_groups(self, n_groups: int) -> None:
        dev = self.device
        self._n_groups = n_groups
        self._min_lr = torch.tensor(self.min_lrs, dtype=torch.float64).reshape(-1).to(dev)
        self._ones = torch.ones(n_groups, dtype=torch.float64, device=dev)
        self._unscaled = torch.zeros(n_groups, 2, dtype=torch.float64, device=dev)

    def _check_groups(self) -> None:
        """Host-side check of the group count (torch's rule: a scalar min_lr extends)."""
        n = len(self.optimizer.param_groups)
        if n == self._n_groups:
            return
        if self.default_min_lr is None:
            raise RuntimeError(
                f"ReduceLROnPlateau: the optimizer has {n} param groups, {self._n_groups} when "
                "the scheduler was created with a per-group min_lr; set `min_lrs` to a list of "
                f"{n} values"
            )
        self.min_lrs = [self.default_min_lr] * n
        self._allocate_groups(n)

    # -- step -----------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, metrics) -> None:
        """Feeds one metric: updates best, bad epochs, cooldown and lr factors, on the device."""
        self._set_metric(metrics)
        self._check_groups()
        m, best = self._metric, self._best
        if self.mode == "min" and self.threshold_mode == "rel":
            better = m < best * (1.0 - self.threshold)
        elif self.mode == "min":
            better = m < best - self.threshold
        elif self.threshold_mode == "rel":
            better = m > best * (self.threshold + 1.0)
        else:
            better = m > best + self.threshold
        best.copy_(torch.where(better, m, best))
        bad = torch.where(better, 0, self._num_bad_epochs + 1)
        in_cooldown = self._cooldown_counter > 0
        cooldown = torch.where(in_cooldown, self._cooldown_counter - 1, self._cooldown_counter)
        bad = torch.where(in_cooldown, 0, bad)  # bad epochs in cooldown are ignored
        reduce = bad > self.patience
        self._reduce_lr(reduce)
        self._cooldown_counter.copy_(torch.where(reduce, self.cooldown, cooldown))
        self._num_bad_epochs.copy_(torch.where(reduce, 0, bad))
        self._last_epoch.add_(1)

    def _set_metric(self, metrics) -> None:
        if isinstance(metrics, torch.Tensor):
            if metrics.numel() != 1:
                raise ValueError(
                    f"ReduceLROnPlateau.step: metrics must be a 0-dim or one-element tensor, got "
                    f"shape {tuple(metrics.shape)}"
                )
            if metrics.is_complex():
                raise TypeError("ReduceLROnPlateau.step: metrics must be real")
            self._metric.copy_(metrics.detach().reshape(1), non_blocking=True)
        elif isinstance(metrics, numbers.Real) and not isinstance(metrics, bool):
            self._metric.fill_(float(metrics))
        else:
            raise TypeError(
                f"ReduceLROnPlateau.step: metrics must be a tensor or a number, got {metrics!r}"
            )

    def _reduce_lr(self, reduce: torch.Tensor) -> None:
        """lr_scale[g] <- new_lr / schedule_lr where `reduce` and lr - new_lr > eps (no branch)."""
        opt = self.optimizer
        opt._sync_groups()
        states = list(opt._devices.values())
        ds = opt._devices.get(self.device, states[0])
        # The lr without any factor, then the lr the kernel will use: unscaled * lr_scale, the
        # same double product eval_group computes.
        ops.eval_schedule_(ds.program, ds.hparams, self._ones, ds.counter, self._unscaled)
        unscaled = self._unscaled[:, 0]
        scale = ds.lr_scale
        lr = unscaled * scale
        new_lr = torch.maximum(lr * self.factor, self._min_lr)
        apply = reduce & (lr - new_lr > self.eps)  # implies unscaled > 0
        safe = torch.where(unscaled > 0, unscaled, 1.0)
        scale.copy_(torch.where(apply, new_lr / safe, scale))
        for other in states:
            if other is not ds:
                other.lr_scale.copy_(scale, non_blocking=True)

    # -- introspection --------------------------------------------------------------------------
    # The state as 0-dim views of the 1-element storage (same data_ptr at every access).
    @property
    def best(self) -> torch.Tensor:
        """0-dim float64 device tensor: the best metric so far."""
        return self._best.view(())

    @property
    def num_bad_epochs(self) -> torch.Tensor:
        """0-dim int64 device tensor."""
        return self._num_bad_epochs.view(())

    @property
    def cooldown_counter(self) -> torch.Tensor:
        """0-dim int64 device tensor."""
        return self._cooldown_counter.view(())

    @property
    def last_epoch(self) -> torch.Tensor:
        """0-dim int64 device tensor: the number of ``step(metric)`` calls."""
        return self._last_epoch.view(())

    def get_last_lr(self) -> list[torch.Tensor]:
        """Per group, the lr the optimizer's next ``step()`` uses (0-dim float64 device tensors;
        reading them syncs)."""
        return self.optimizer.get_last_lr()

    @property
    def in_cooldown(self) -> torch.Tensor:
        """0-dim bool device tensor."""
        return self._cooldown_counter.view(()) > 0

    # -- state_dict -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyperparameters and state (state tensors as CPU copies). The lr factors themselves are
        in the optimizer's state_dict."""
        sd = {k: getattr(self, k) for k in _HYPER}
        sd["min_lrs"] = list(self.min_lrs)
        sd["default_min_lr"] = self.default_min_lr
        for k in _STATE:
            sd[k] = getattr(self, k).detach().to("cpu", copy=True)
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """Validates, then copies into the existing state tensors (captured graphs stay valid).
        Also accepts a torch ``ReduceLROnPlateau.state_dict()`` (numbers instead of tensors)."""
        missing = [k for k in (*_HYPER, "min_lrs", *_STATE) if k not in state_dict]
        if missing:
            raise ValueError(f"ReduceLROnPlateau.load_state_dict: missing keys {missing}")
        hyper = _check_hyper(*(state_dict[k] for k in _HYPER))
        n_groups = len(self.optimizer.param_groups)
        min_lrs, _ = _check_min_lrs(list(state_dict["min_lrs"]), n_groups)
        default = state_dict.get("default_min_lr")
        if default is not None:
            default = _real("default_min_lr", default, minimum=0.0)
        values = {}
        for k in _STATE:
            v = state_dict[k]
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    raise ValueError(f"ReduceLROnPlateau.load_state_dict: {k} must be a scalar")
                v = v.detach().reshape(1)  # 0-dim in a state_dict; stored as one element
            elif not isinstance(v, numbers.Real) or isinstance(v, bool):
                raise TypeError(f"ReduceLROnPlateau.load_state_dict: {k} must be a number")
            values[k] = v
        # -- valid: apply -------------------------------------------------------------------------
        self.__dict__.update(hyper)
        self.min_lrs, self.default_min_lr = min_lrs, default
        if n_groups != self._n_groups:
            self._allocate_groups(n_groups)
        else:
            self._min_lr.copy_(torch.tensor(min_lrs, dtype=torch.float64))
        for k, v in values.items():
            t = getattr(self, "_" + k)
            if isinstance(v, torch.Tensor):
                t.copy_(v)
            else:
                t.fill_(v)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in _HYPER)
        return f"ReduceLROnPlateau({inner}, min_lr={self.min_lrs!r})"
