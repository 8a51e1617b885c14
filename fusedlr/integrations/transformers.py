"""HF transformers ``Trainer`` with a fusedlr optimizer: the schedule runs in the kernel.

The recipe, instead of ``Trainer``::

    from fusedlr.integrations.transformers import FusedLRTrainer
    trainer = FusedLRTrainer(model=model, args=args, train_dataset=ds)   # Trainer's arguments
    trainer.train()

With your own ``Trainer`` subclass: ``class MyTrainer(FusedLRTrainerMixin, MyBaseTrainer)``.

What it does, with Trainer's own code wherever possible:

- The optimizer: ``Trainer.create_optimizer`` as usual (its decay / no-decay groups, from
  ``get_decay_parameter_names``), with the class from ``get_optimizer_cls_and_kwargs`` mapped
  to fusedlr: ``optim="adamw_torch"`` / ``"adamw_torch_fused"`` -> ``fusedlr.AdamW``,
  ``"sgd"`` -> ``fusedlr.SGD`` (``optim_args`` momentum etc. as HF parses them); lr, betas, eps
  and weight_decay from ``TrainingArguments``. ``optimizer_cls_and_kwargs=(fusedlr.X, {...})``
  and ``optimizers=(fusedlr optimizer, None)`` work too.
- The schedule: ``hf_schedule`` turns ``lr_scheduler_type``, ``warmup_steps`` (steps or ratio),
  ``lr_scheduler_kwargs`` and the number of training steps Trainer computed into a fusedlr
  schedule equal to HF's lambda at every step of the run, and sets it on every group that has
  none (a schedule you gave the optimizer is kept).
- Clipping: ``max_grad_norm`` (Trainer's default 1.0) goes to the fusedlr optimizer, which
  clips inside its step (``fusedlr/_clip.py``); Trainer's own clipping pass is skipped and the
  ``grad_norm`` it logs is ``optimizer.last_grad_norm`` (the same value ``clip_grad_norm_``
  returns, read at logging time, no sync per step). A fusedlr optimizer you pass with its own
  ``max_grad_norm`` clips with that one, and Trainer does not clip again.
- The scheduler Trainer holds is a ``DeviceScheduleView``: an ``LRScheduler`` that never writes
  ``group['lr']`` (so Trainer adds no LambdaLR on top and ``fusedlr.DoubleScheduleWarning``
  stays silent). Its ``get_last_lr()`` is ``optimizer.get_host_lr("last")``: the lr the kernel
  used at the step just taken, computed on the host, no device sync; that is what Trainer logs
  as ``learning_rate``.

Importing this module imports transformers; ``import fusedlr`` does not.
"""

from __future__ import annotations

import json
import math

import torch

import fusedlr
from fusedlr import schedules as S
from fusedlr.integrations._wrappers import unwrap

try:
    from transformers import Trainer
    from transformers.optimization import get_scheduler
    from transformers.trainer_utils import SchedulerType
except ImportError as exc:  # pragma: no cover - exercised only without transformers
    raise ImportError(
        "fusedlr.integrations.transformers needs HF transformers: pip install transformers"
    ) from exc

__all__ = [
    "DeviceScheduleView", "FusedLRTrainer", "FusedLRTrainerMixin", "hf_schedule",
    "trainer_schedule",
]

# torch optimizer classes Trainer's optim names give -> their fusedlr equivalent
_FUSED_CLASSES = {torch.optim.AdamW: fusedlr.AdamW, torch.optim.Adam: fusedlr.Adam,
                  torch.optim.SGD: fusedlr.SGD}
_SUPPORTED_OPTIM = ("adamw_torch", "adamw_torch_fused", "sgd")
# torch implementation switches: meaningless for fusedlr's single fused kernel
_TORCH_ONLY_KWARGS = ("foreach", "fused", "capturable")
# Trainer clips through _clip_grad_norm / _get_grad_norm (transformers 5): there the clipping
# moves into the fusedlr step; with a Trainer without them it stays Trainer's.
_CAN_MOVE_CLIP = hasattr(Trainer, "_clip_grad_norm") and hasattr(Trainer, "_get_grad_norm")
# lr_scheduler_type values decided by evaluation metrics on the host, not by the step count
_METRIC_DRIVEN = ("reduce_lr_on_plateau", "greedy")
# relative agreement a closed form must reach with HF's lambda at every step, else tabulated
_AGREEMENT = 1e-12


# -- the schedule ---------------------------------------------------------------------------------
def hf_schedule(name: str, num_training_steps: int, num_warmup_steps: int | float = 0,
                scheduler_kwargs: dict | None = None, *, lr_init: float | None = None,
                group_lr: float | None = None) -> S.Schedule:
    """The fusedlr schedule of HF's ``get_scheduler(name, ...)``: a factor of the group's lr,
    equal to HF's ``LambdaLR`` factor at every step ``0 .. num_training_steps`` (to 1e-12).

    ``num_warmup_steps`` is a step count, or a float in [0, 1): a ratio of
    ``num_training_steps`` rounded up (as ``TrainingArguments.warmup_steps``).
    ``scheduler_kwargs`` are ``lr_scheduler_kwargs`` (``num_cycles``, ``power``, ``lr_end``,
    ``min_lr``, ``min_lr_rate``, ``timescale``, ``num_decay_steps``, ...). ``lr_init`` is HF's
    ``optimizer.defaults["lr"]`` (``learning_rate``), needed by ``polynomial`` (absolute
    ``lr_end``) and by ``min_lr``; ``group_lr`` the lr of the group the schedule is for
    (default ``lr_init``; matters for ``polynomial`` only).

    The closed form is ``fusedlr.schedules.from_hf``'s (every HF schedule but the metric-driven
    ones), used once it agrees with HF's lambda at every step; where from_hf refuses the
    arguments (degenerate lengths) or disagrees, HF's own lambda is tabulated over the run
    (``fusedlr.schedules.LambdaLR``), exact by construction.

    >>> hf_schedule("cosine", num_training_steps=100, num_warmup_steps=0.1)
    CosineWithWarmup(warmup_steps=10, total_steps=100, num_cycles=0.5, min_lr_rate=0.0)
    """
    name = SchedulerType(name).value  # HF's error for an unknown name
    if name in _METRIC_DRIVEN:
        raise ValueError(
            f"lr_scheduler_type={name!r} is driven by evaluation metrics on the host, which a "
            "schedule on the device cannot follow; use a step-count schedule (cosine, linear, "
            "warmup_stable_decay, ...) or, in your own loop, fusedlr.ReduceLROnPlateau"
        )
    steps = _positive_int("num_training_steps", num_training_steps)
    warmup = _warmup_steps(num_warmup_steps, steps)
    kwargs = _kwargs_dict(scheduler_kwargs)
    _check_lr("lr_init", lr_init)
    _check_lr("group_lr", group_lr)
    needs_lr = name == "polynomial" or kwargs.get("min_lr") is not None
    if needs_lr and lr_init is None:
        raise ValueError(
            f"lr_init is required for lr_scheduler_type={name!r} with these kwargs: HF scales "
            "lr_end / min_lr by the optimizer's lr (TrainingArguments.learning_rate)"
        )
    lr_init = 1.0 if lr_init is None else float(lr_init)
    group_lr = lr_init if group_lr is None else float(group_lr)

    factor = _hf_lambda(name, warmup, steps, kwargs, lr_init)
    reference = [float(factor(t)) for t in range(steps + 1)]
    spec = _closed_form(name, kwargs, warmup, steps, lr_init)
    if spec is not None and _agrees(spec, reference, group_lr):
        return spec
    return S.LambdaLR(reference)


def trainer_schedule(args, num_training_steps: int, *, group_lr: float | None = None
                     ) -> S.Schedule:
    """``hf_schedule`` from ``TrainingArguments``: ``lr_scheduler_type``, the warmup of
    ``args.get_warmup_steps(num_training_steps)``, ``lr_scheduler_kwargs`` and
    ``learning_rate``, for ``num_training_steps`` (what Trainer passes to ``create_scheduler``)."""
    return hf_schedule(args.lr_scheduler_type, num_training_steps,
                       args.get_warmup_steps(num_training_steps), args.lr_scheduler_kwargs,
                       lr_init=args.learning_rate, group_lr=group_lr)


def _hf_lambda(name, warmup, steps, kwargs, lr_init):
    """HF's own lr factor function, from ``get_scheduler`` on a one-parameter optimizer (so
    HF validates the kwargs and resolves their defaults, e.g. min_lr -> min_lr_rate)."""
    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr_init)
    scheduler = get_scheduler(name, dummy, num_warmup_steps=warmup, num_training_steps=steps,
                              scheduler_specific_kwargs=dict(kwargs))
    return scheduler.lr_lambdas[0]


def _closed_form(name, kwargs, W, N, lr_init) -> S.Schedule | None:
    """``fusedlr.schedules.from_hf``'s closed form of HF's schedule, or None where it has none
    for these arguments (the caller then tabulates HF's lambda)."""
    try:
        return S.from_hf(name, W, N, lr_init=lr_init, **kwargs)
    except (TypeError, ValueError):
        return None


def _agrees(spec: S.Schedule, reference: list[float], group_lr: float) -> bool:
    """Whether spec's lr for a group with lr group_lr is group_lr * HF's factor at each step."""
    got = spec.values(len(reference), group_lr) / group_lr
    want = torch.tensor(reference, dtype=torch.float64)
    return bool(torch.allclose(got, want, rtol=_AGREEMENT, atol=_AGREEMENT))


def _positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _warmup_steps(value, steps: int) -> int:
    """Steps, or a ratio in [0, 1) of ``steps`` rounded up (TrainingArguments.get_warmup_steps)."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not value >= 0 or (value >= 1 and not float(value).is_integer()):
        raise ValueError(
            f"num_warmup_steps must be an int >= 0 or a ratio in [0, 1), got {value!r}"
        )
    return int(value) if value >= 1 else math.ceil(steps * value)


def _kwargs_dict(kwargs) -> dict:
    if kwargs is None:
        return {}
    if isinstance(kwargs, str):  # TrainingArguments accepts a JSON string
        kwargs = json.loads(kwargs) if kwargs.strip() else {}
    if not isinstance(kwargs, dict):
        raise TypeError(f"scheduler_kwargs must be a dict or None, got {type(kwargs).__name__}")
    return kwargs


def _check_lr(name, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


# -- the scheduler Trainer holds ------------------------------------------------------------------
class DeviceScheduleView(torch.optim.lr_scheduler.LRScheduler):
    """A read-only ``LRScheduler`` over the schedule a fusedlr optimizer runs on the device.

    ``step()`` only counts (the optimizer's ``step()`` already advanced the schedule);
    nothing ever writes ``group['lr']`` or ``group['initial_lr']``. ``get_last_lr()`` is the
    lr each group's kernel used at the most recent ``step()`` (before any, the lr of step 0),
    ``get_lr()`` the lr of the next, both from ``optimizer.get_host_lr``: host floats, no
    sync (a read of the device, warned once, only where the host cannot know the lr).

    ``optimizer`` may be a wrapper (accelerate's ``AcceleratedOptimizer``). ``schedules``
    (group index -> spec) are the schedules this view set from ``TrainingArguments``: after
    a checkpoint's optimizer state is loaded, ``load_state_dict`` sets them again, so the
    schedule follows the current arguments and the restored step count, as HF's does.
    """

    def __init__(self, optimizer, schedules: dict[int, S.Schedule] | None = None):
        # LRScheduler.__init__ is not called: it writes group['initial_lr'] and group['lr'].
        self.optimizer = optimizer
        self.fused = unwrap(optimizer)
        self.schedules = dict(schedules or {})
        self.base_lrs = [group["lr"] for group in self.fused.param_groups]
        self.last_epoch = self.fused.host_step_count
        self._step_count = 1

    def step(self, epoch=None) -> None:
        if epoch is not None:
            raise ValueError("DeviceScheduleView.step: epoch must be None (the optimizer counts)")
        self.last_epoch += 1
        self._step_count += 1

    def get_last_lr(self) -> list[float]:
        return self.fused.get_host_lr("last", fallback="device")

    def get_lr(self) -> list[float]:
        return self.fused.get_host_lr("next", fallback="device")

    def state_dict(self) -> dict:
        return {"last_epoch": self.last_epoch, "_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        for index, spec in self.schedules.items():
            if self.fused.param_groups[index]["schedule"] != spec:
                self.fused.param_groups[index]["schedule"] = spec


# -- the Trainer ----------------------------------------------------------------------------------
class FusedLRTrainerMixin:
    """Makes a ``Trainer`` (subclass) train with a fusedlr optimizer whose schedule comes from
    ``TrainingArguments``; put it first: ``class MyTrainer(FusedLRTrainerMixin, Trainer)``."""

    @classmethod
    def get_optimizer_cls_and_kwargs(cls, args, model=None):
        """Trainer's choice for ``args.optim``, mapped to the fusedlr class (same kwargs)."""
        optimizer_cls, kwargs = super().get_optimizer_cls_and_kwargs(args, model)
        fused_cls = _FUSED_CLASSES.get(optimizer_cls)
        if fused_cls is None:
            optim = getattr(args.optim, "value", args.optim)
            raise ValueError(
                f"{cls.__name__}: optim={optim!r} is not supported; fusedlr has optim in "
                f"{_SUPPORTED_OPTIM} (or pass optimizer_cls_and_kwargs=(fusedlr.SGD / Adam / "
                "AdamW, {...}))"
            )
        kwargs = {k: v for k, v in kwargs.items() if k not in _TORCH_ONLY_KWARGS}
        if args.max_grad_norm is not None and args.max_grad_norm > 0 and _CAN_MOVE_CLIP:
            kwargs["max_grad_norm"] = float(args.max_grad_norm)  # clipping inside the step
        return fused_cls, kwargs

    def _fused_clipping(self):
        """The fusedlr optimizer when it clips in its step (then Trainer does not), else None."""
        fused = unwrap(self.optimizer) if self.optimizer is not None else None
        if getattr(fused, "max_grad_norm", None) is None or not _CAN_MOVE_CLIP:
            return None
        return fused

    def _clip_grad_norm(self, model):
        """With a clipping fusedlr optimizer: no clipping pass here; the norm Trainer logs is
        ``optimizer.last_grad_norm``, the device tensor the step about to run fills in place
        (read when Trainer logs, not now: no sync)."""
        fused = self._fused_clipping()
        if fused is None:
            return super()._clip_grad_norm(model)
        return fused.last_grad_norm

    def _get_grad_norm(self, model, grad_norm=None):
        if self._fused_clipping() is not None:
            return grad_norm  # (Trainer would otherwise compute an unclipped norm for logging)
        return super()._get_grad_norm(model, grad_norm)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Sets the schedule from ``TrainingArguments`` on every group without one and returns
        a ``DeviceScheduleView`` (Trainer then steps nothing but the optimizer)."""
        if self.lr_scheduler is None:
            optimizer = self.optimizer if optimizer is None else optimizer
            fused = unwrap(optimizer)
            previous = getattr(self, "_fusedlr_schedules", {})
            schedules, by_lr = {}, {}
            for index, group in enumerate(fused.param_groups):
                mine = previous.get(index)
                if group["schedule"] is None or (mine is not None and group["schedule"] == mine):
                    lr = group["lr"] if group["lr"] > 0 else None
                    if lr not in by_lr:
                        by_lr[lr] = trainer_schedule(self.args, num_training_steps, group_lr=lr)
                    schedules[index] = group["schedule"] = by_lr[lr]
            self._fusedlr_schedules = schedules
            self.lr_scheduler = DeviceScheduleView(optimizer, schedules)
            self._created_lr_scheduler = True
        return self.lr_scheduler


class FusedLRTrainer(FusedLRTrainerMixin, Trainer):
    """``transformers.Trainer`` training with a fusedlr optimizer (see the module docstring)."""
