"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017), with the exponential lr sweep running as an on-device schedule."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from fusedlr.schedules import ExponentialLR
from fusedlr.schedules._base import check_float, check_int


@dataclass
class LRFinderResult:
    """What ``find_lr`` measured.

    Attributes:
        lrs: the lr of each recorded step (from the schedule's ``values()``, i.e. what
            the kernel used).
        losses: the smoothed (bias-corrected EMA) loss at each recorded step.
        raw_losses: the loss of each batch as computed.
        suggested_lr: the lr where the smoothed loss falls fastest against log(lr),
            ignoring the first tenth of the sweep (where the average is still noisy) and
            the point that diverged; None if there are fewer than 3 such points or the
            loss never falls.
        stopped_early: True if the sweep stopped on divergence before ``num_steps``.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggested_lr: float | None
    stopped_early: bool
    num_steps: int = 0
    _suggested_index: int | None = field(default=None, repr=False)

    def plot(self, path=None, *, title: str | None = None):
        """Smoothed loss against lr (log axis) with the suggestion marked; returns the Figure
        and writes a PNG when `path` is given."""
        from fusedlr.plotting import new_figure, save_png

        fig = new_figure()
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(self.lrs, self.raw_losses, color="0.75", linewidth=0.8, label="loss per batch")
        ax.plot(self.lrs, self.losses, color="C0", linewidth=1.8, label="smoothed loss")
        if self.suggested_lr is not None:
            i = self._suggested_index
            ax.axvline(self.suggested_lr, color="C3", linestyle="--", linewidth=1.0)
            ax.plot([self.suggested_lr], [self.losses[i]], "o", color="C3",
                    label=f"suggested lr = {self.suggested_lr:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        finite = [v for v in self.losses if math.isfinite(v)]
        if finite:  # keep the divergence spike from flattening the interesting part
            lo = min(v for v in finite + self.raw_losses if math.isfinite(v))
            hi = max(finite)
            top = min(hi, 1.2 * finite[0]) if finite[0] > 0 else hi
            pad = 0.05 * (top - lo) or 0.1 * abs(lo) or 1.0
            ax.set_ylim(lo - pad, top + pad)
        ax.set_title(title or f"LR range test ({len(self.lrs)} of {self.num_steps} steps)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        if path is not None:
            save_png(fig, path)
        return fig


def _suggest(lrs, losses) -> int | None:
    """Index of the steepest descent of the smoothed loss against log(lr)."""
    n = len(lrs)
    if n < 3:
        return None
    x = [math.log(v) for v in lrs]
    best, best_i = math.inf, None
    for i in range(n):  # central differences inside, one-sided at the ends (numpy.gradient)
        lo, hi = max(i - 1, 0), min(i + 1, n - 1)
        g = (losses[hi] - losses[lo]) / (x[hi] - x[lo])
        if math.isfinite(g) and g < best:
            best, best_i = g, i
    return best_i if best < 0 else None


def _batches(loader):
    """Cycles over `loader` (re-iterating it when it runs out)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("find_lr: the loader yielded no batches")


def _to(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def find_lr(model, loss_fn, loader, optimizer_factory, start_lr=1e-7, end_lr=10.0,
            num_steps=100, smooth=0.98, diverge_factor=4.0) -> LRFinderResult:
    """Runs the LR range test and returns an :class:`LRFinderResult`.

    The lr grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps``
    batches. The sweep is an on-device schedule, ``ExponentialLR(gamma)`` with
    ``gamma = (end_lr / start_lr) ** (1 / (num_steps - 1))`` on base lr ``start_lr``,
    so the optimizer step is the one training uses. Each batch's loss is smoothed by a
    bias-corrected exponential moving average (weight ``smooth``); the test stops early
    once the smoothed loss exceeds ``diverge_factor`` times the best one (or is not
    finite). The suggested lr is where the smoothed loss falls fastest against log(lr).

    Reading the loss costs one host-device sync per batch (``loss.item()``): the range
    test decides on the host whether to stop, so this is inherent to it; training with
    fusedlr afterwards needs no such sync.

    Args:
        model: a ``torch.nn.Module``; it is trained in train mode during the test.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar tensor``.
        loader: an iterable of ``(inputs, targets)`` batches (re-iterated if it has
            fewer than ``num_steps``); tensors are moved to the model's device.
        optimizer_factory: either a callable
            ``optimizer_factory(params, lr=start_lr, schedule=...)`` returning a fusedlr
            optimizer, e.g. ``fusedlr.SGD`` or ``functools.partial(fusedlr.SGD,
            momentum=0.9)``; or an existing fusedlr optimizer over the model's
            parameters, whose groups are temporarily given ``lr=start_lr`` and the sweep
            schedule. Groups are stepped per batch (``steps_per_epoch`` is set to 1).

    Afterwards the model's parameters and buffers, its train/eval mode, the parameters'
    ``.grad``, the global torch RNG state and (when an optimizer was passed) the
    optimizer's state, param groups and schedule counter are restored bit-identically,
    in place.
    """
    from fusedlr.optim import _FusedOptimizer

    start_lr = check_float("start_lr", start_lr, 0.0, owner="find_lr", strict_min=True)
    end_lr = check_float("end_lr", end_lr, start_lr, owner="find_lr", strict_min=True)
    num_steps = check_int("num_steps", num_steps, 2, owner="find_lr")
    smooth = check_float("smooth", smooth, 0.0, 1.0, owner="find_lr", strict_max=True)
    diverge_factor = check_float("diverge_factor", diverge_factor, 1.0, owner="find_lr",
                                 strict_min=True)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"find_lr: model must be a torch.nn.Module, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("find_lr: the model has no trainable parameters")
    device = params[0].device

    gamma = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    schedule = ExponentialLR(gamma)
    lr_values = schedule.values(num_steps, start_lr).tolist()

    given = isinstance(optimizer_factory, torch.optim.Optimizer)
    if given and not isinstance(optimizer_factory, _FusedOptimizer):
        raise TypeError(
            f"find_lr: {type(optimizer_factory).__name__} is not a fusedlr optimizer; pass "
            "fusedlr.SGD/Adam/AdamW (or a factory such as functools.partial(fusedlr.SGD, ...))"
        )
    if not given and not callable(optimizer_factory):
        raise TypeError("find_lr: optimizer_factory must be callable or a fusedlr optimizer")

    # -- snapshot everything the test touches ------------------------------------------------------
    model_state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    was_training = model.training
    grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    if given:
        opt = optimizer_factory
        opt_state = copy.deepcopy(opt.state_dict())
        saved_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        had_state = set(opt.state)
        counter = opt.schedule_counter
        for g in opt.param_groups:
            g.update(lr=start_lr, schedule=schedule, steps_per_epoch=1)
        for ds in opt._devices.values():
            ds.counter.zero_()
            ds.lr_scale.fill_(1.0)
    else:
        opt = optimizer_factory(params, lr=start_lr, schedule=schedule)
        if not isinstance(opt, _FusedOptimizer):
            raise TypeError(
                f"find_lr: optimizer_factory returned {type(opt).__name__}, not a fusedlr "
                "optimizer (SGD, Adam, AdamW)"
            )
        for g in opt.param_groups:
            if g["schedule"] is not schedule or g["steps_per_epoch"] != 1 or g["lr"] != start_lr:
                g.update(lr=start_lr, schedule=schedule, steps_per_epoch=1)

    lrs, losses, raw = [], [], []
    stopped_early = False
    try:
        model.train()
        avg, best = 0.0, math.inf
        batches = _batches(loader)
        for i in range(num_steps):
            batch = _to(next(batches), device)
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise ValueError("find_lr: each batch must be an (inputs, targets) pair")
            inputs, targets = batch[0], batch[1]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            opt.step()
            value = float(loss.detach())  # the one sync per batch
            avg = smooth * avg + (1.0 - smooth) * value
            smoothed = avg / (1.0 - smooth ** (i + 1))
            lrs.append(lr_values[i])
            raw.append(value)
            losses.append(smoothed)
            if not math.isfinite(smoothed) or smoothed > diverge_factor * best:
                stopped_early = i < num_steps - 1
                break
            best = min(best, smoothed)
    finally:
        # -- restore, in place -------------------------------------------------------------------
        with torch.no_grad():
            current = model.state_dict(keep_vars=True)
            for k, v in model_state.items():
                current[k].copy_(v)
        for p, g in grads.items():
            p.grad = g
        model.train(was_training)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        if given:
            for p in list(opt.state):
                if p not in had_state:
                    del opt.state[p]
            for g, sg in zip(opt.param_groups, saved_groups, strict=True):
                g.update(sg)
            opt.load_state_dict(opt_state)
            if opt.schedule_counter is not counter:  # pragma: no cover - guarded by tests
                raise RuntimeError("find_lr: the optimizer's counter tensor was replaced")

    # Judge the slope after the first tenth of the sweep (the EMA has averaged too few
    # batches there to be smooth) and before the divergence spike, as fastai does.
    skip = num_steps // 10
    usable = len(losses) - 1 if stopped_early else len(losses)
    idx = _suggest(lrs[skip:usable], losses[skip:usable])
    idx = None if idx is None else idx + skip
    return LRFinderResult(
        lrs=lrs,
        losses=losses,
        raw_losses=raw,
        suggested_lr=None if idx is None else lrs[idx],
        stopped_early=stopped_early,
        num_steps=num_steps,
        _suggested_index=idx,
    )
