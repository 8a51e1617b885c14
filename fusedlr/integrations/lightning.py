"""Lightning: the ``configure_optimizers`` recipe and a ``LearningRateMonitor`` that logs the lr
the fusedlr kernel used.

The recipe: return the fusedlr optimizer, with its schedule, and no ``lr_scheduler``::

    def configure_optimizers(self):
        total = self.trainer.estimated_stepping_batches   # optimizer steps of the whole fit
        return fusedlr.AdamW(self.parameters(), lr=3e-3,
                             schedule=S.WarmupCosine(total // 10, total))

fusedlr counts ``optimizer.step()`` calls, which is what Lightning counts as a step
(``max_steps``, ``estimated_stepping_batches``, ``interval: "step"`` schedulers): with
``accumulate_grad_batches=k`` that is one step per k batches. A schedule written in epochs
needs ``steps_per_epoch=optimizer_steps_per_epoch(self.trainer)``.

``LearningRateMonitor`` here is Lightning's, with the same arguments and metric names
(``lr-AdamW``, ``lr-AdamW/pg1``, ``lr-AdamW-momentum`` ...). For a fusedlr optimizer it logs,
after each optimizer step, the lr (and momentum / beta1) that step's kernel used, computed on
the host (``get_host_lr("last")``): no device read. Lightning's own monitor logs
``group['lr']``, which for fusedlr is the base lr, the same number at every step. The values
land at the same ``step`` as Lightning's monitor puts the lr of a torch scheduler (the index of
the optimizer step), so plots of either line up. Other optimizers are logged exactly as
Lightning's monitor does.

Lightning is imported with this module (not with ``fusedlr`` or ``fusedlr.integrations``):
``lightning.pytorch`` if it is installed, else ``pytorch_lightning``; when only
``pytorch_lightning`` has been imported already, that one.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch

from fusedlr.integrations._wrappers import find_fused

if "pytorch_lightning" in sys.modules and "lightning.pytorch" not in sys.modules:
    import pytorch_lightning as pl
else:
    try:
        import lightning.pytorch as pl
    except ImportError:
        import pytorch_lightning as pl

__all__ = ["LearningRateMonitor", "clip_gradients", "is_fusedlr_optimizer",
           "optimizer_steps_per_epoch"]

# Which values LearningRateMonitor._get_optimizer_stats reports, by the hook that asks.
_BEFORE_STEP = "before_step"  # on_train_batch_start: Lightning's moment, torch optimizers only
_AFTER_STEP = "after_step"  # on_train_batch_end: fusedlr optimizers, the step just taken
_EPOCH_START = "epoch_start"  # on_train_epoch_start: every optimizer, the next step's values


def is_fusedlr_optimizer(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a fusedlr SGD / Adam / AdamW (a ``LightningOptimizer`` or a
    DeepSpeed wrapper is looked through)."""
    return find_fused(optimizer) is not None


def optimizer_steps_per_epoch(trainer: pl.Trainer) -> int:
    """The optimizer steps in one training epoch, ``ceil(batches / accumulate_grad_batches)``
    (Lightning steps on an epoch's last batch even when its accumulation is incomplete): the
    ``steps_per_epoch`` of a fusedlr schedule written in epochs. Call it in
    ``configure_optimizers``; it loads the train dataloader if needed, as
    ``trainer.estimated_stepping_batches`` does."""
    if not isinstance(trainer, pl.Trainer):
        raise TypeError(f"trainer must be a {pl.__name__}.Trainer, got {type(trainer).__name__}")
    trainer.estimated_stepping_batches  # noqa: B018 (loads the train dataloader when needed)
    batches = trainer.num_training_batches
    if not math.isfinite(batches) or batches < 1:
        raise ValueError(
            f"trainer: the train dataloader has {batches} batches per epoch, so the optimizer "
            "steps per epoch are unknown (an iterable dataset without __len__?): pass "
            "steps_per_epoch yourself, or write the schedule in steps"
        )
    return math.ceil(batches / trainer.accumulate_grad_batches)


def clip_gradients(module: pl.LightningModule, optimizer: torch.optim.Optimizer,
                   gradient_clip_val: float | None = None,
                   gradient_clip_algorithm: str | None = None) -> None:
    """Lightning's gradient clipping for an optimizer that unscales inside its step.

    Under ``precision="16-mixed"`` or ``"bf16-mixed"``, Lightning refuses to clip the grads of
    an optimizer with ``_step_supports_amp_scaling`` (fusedlr's, torch's ``fused=True``):
    ``RuntimeError: ... does not allow for gradient clipping because it performs unscaling of
    gradients internally``. This clips them anyway: with a ``GradScaler`` (16-mixed) it first
    unscales them (``scaler.unscale_``, which also finds infs; the fused step then applies no
    second unscale and still skips an overflow step), then clips as Lightning does. Without a
    scaler it is Lightning's clipping. Use it as the module's hook::

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                        gradient_clip_algorithm=None):
            fusedlr.integrations.lightning.clip_gradients(
                self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    and keep ``Trainer(gradient_clip_val=..., gradient_clip_algorithm=...)`` as usual (the
    arguments default to the Trainer's).
    """
    trainer = module.trainer
    clip_val = trainer.gradient_clip_val if gradient_clip_val is None else gradient_clip_val
    if clip_val is None:
        return
    if isinstance(clip_val, bool) or not isinstance(clip_val, (int, float)):
        raise TypeError(f"gradient_clip_val must be a number, got {clip_val!r}")
    if not clip_val >= 0:  # NaN too
        raise ValueError(
            f"gradient_clip_val must be >= 0 (0 or None: no clipping), got {clip_val!r}")
    if clip_val == 0:
        return
    algorithm = gradient_clip_algorithm or trainer.gradient_clip_algorithm or "norm"
    name = str(getattr(algorithm, "value", algorithm)).lower()  # Lightning passes its enum
    algorithms = pl.utilities.GradClipAlgorithmType
    if not algorithms.supported_type(name):
        raise ValueError(f"gradient_clip_algorithm must be one of "
                         f"{algorithms.supported_types()}, got {algorithm!r}")
    optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer's: the raw one
    plugin = trainer.precision_plugin
    scaler = getattr(plugin, "scaler", None)
    if scaler is not None and getattr(optimizer, "_step_supports_amp_scaling", False):
        scaler.unscale_(optimizer)  # others were unscaled by Lightning already
    pl.plugins.precision.Precision.clip_gradients(plugin, optimizer, clip_val, algorithms(name))


class LearningRateMonitor(pl.callbacks.LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` that logs the lr a fusedlr optimizer's kernel used.

    Args (as Lightning's):
        logging_interval: ``"step"``, ``"epoch"`` or ``None`` (each scheduler's interval;
            optimizers without a Lightning scheduler, as fusedlr's in the recipe, at both).
        log_momentum: also log SGD's momentum / Adam's beta1 (``<name>-momentum``); for
            fusedlr, the value the kernel used (a ``CyclicLR`` / ``OneCycleLR`` schedule cycles
            it).
        log_weight_decay: also log ``group['weight_decay']`` (``<name>-weight_decay``).

    fusedlr optimizers: at ``"step"`` logging, the values of the optimizer step just taken
    (``get_host_lr("last")`` / ``get_host_momentum("last")``), logged from
    ``on_train_batch_end`` at ``step = index of that optimizer step``; at ``"epoch"``
    logging, the values the epoch's first step will use (``"next"``), from
    ``on_train_epoch_start`` as Lightning. Both are computed on the host, no device read,
    and put into ``trainer.callback_metrics`` as CPU tensors (Lightning's monitor copies each to
    the root device). Where the host cannot know them (a ``fusedlr.ReduceLROnPlateau`` is
    attached, ``skip_schedule_on_inf=True`` under AMP, compiled or graph-captured steps), the
    device is read instead, once per logged step, with one ``fusedlr.HostLRWarning``.

    Other optimizers are logged as Lightning's monitor logs them (``group['lr']`` before the
    step, from ``on_train_batch_start``).
    """

    def __init__(self, logging_interval: str | None = None, log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        super().__init__(logging_interval=logging_interval, log_momentum=log_momentum,
                         log_weight_decay=log_weight_decay)
        self._phase = _BEFORE_STEP

    # -- hooks ----------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._phase = _BEFORE_STEP
        super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        self._phase = _EPOCH_START
        try:
            super().on_train_epoch_start(trainer, *args, **kwargs)
        finally:
            self._phase = _BEFORE_STEP

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """Logs the fusedlr optimizers' values of the optimizer step this batch took (none
        while gradients accumulate)."""
        if self.logging_interval == "epoch" or not trainer._logger_connector.should_update_logs:
            return
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop._should_accumulate():  # no optimizer step in this batch
            return
        if not any(is_fusedlr_optimizer(o) for o in trainer.optimizers):
            return
        self._phase = _AFTER_STEP
        try:
            stats = self._extract_stats(trainer, "step" if self.logging_interval is None else "any")
        finally:
            self._phase = _BEFORE_STEP
        if stats:
            # _batches_that_stepped is advanced after this hook: it is the step just taken, the
            # index at which Lightning's monitor logs a torch scheduler's lr for that step.
            for logger in trainer.loggers:
                logger.log_metrics(stats, step=epoch_loop._batches_that_stepped)

    # -- values ---------------------------------------------------------------------------------
    def _extract_stats(self, trainer: pl.Trainer, interval: str) -> dict[str, float]:
        """Lightning's ``_extract_stats``, except that fusedlr optimizers' values go into
        ``callback_metrics`` as CPU tensors (no host-to-device copy per value)."""
        sched_names, scheduled, scheduled_types = self._find_names_from_schedulers(
            trainer.lr_scheduler_configs)
        self._remap_keys(sched_names)
        pairs = [(config.scheduler.optimizer, names)
                 for names, config in zip(sched_names, trainer.lr_scheduler_configs, strict=True)
                 if interval in (config.interval, "any")]
        opt_names, unscheduled = self._find_names_from_optimizers(
            trainer.optimizers, seen_optimizers=scheduled, seen_optimizer_types=scheduled_types)
        self._remap_keys(opt_names)
        pairs += zip(unscheduled, opt_names, strict=True)

        stats: dict[str, float] = {}
        on_host: set[str] = set()
        for optimizer, names in pairs:
            current = self._get_optimizer_stats(optimizer, names)
            stats.update(current)
            if is_fusedlr_optimizer(optimizer):
                on_host.update(current)
        device = trainer.strategy.root_device
        trainer.callback_metrics.update({
            name: torch.tensor(value, device="cpu" if name in on_host else device)
            for name, value in stats.items()
        })
        return stats

    def _get_optimizer_stats(self, optimizer: torch.optim.Optimizer,
                             names: list[str]) -> dict[str, float]:
        if not is_fusedlr_optimizer(optimizer):
            if self._phase == _AFTER_STEP:
                return {}
            return super()._get_optimizer_stats(optimizer, names)
        if self._phase == _BEFORE_STEP:
            return {}
        optimizer = find_fused(optimizer)
        which = "last" if self._phase == _AFTER_STEP else "next"
        lrs = optimizer.get_host_lr(which, fallback="device")
        momenta = (optimizer.get_host_momentum(which, fallback="device")
                   if self.log_momentum else [None] * len(lrs))
        stats: dict[str, float] = {}
        for group, name, lr, momentum in zip(optimizer.param_groups, names, lrs, momenta,
                                             strict=True):
            self.lrs[name].append(lr)
            stats[name] = lr
            if self.log_momentum:
                self.last_momentum_values[f"{name}-momentum"] = momentum
                stats[f"{name}-momentum"] = momentum
            stats.update(self._extract_weight_decay(group, f"{name}-weight_decay"))
        return stats
