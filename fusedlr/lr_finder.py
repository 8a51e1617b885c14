"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017), with the exponential lr sweep running as an on-device schedule.

The recorded losses are smoothed after the sweep by a centred (zero-lag) local
quadratic regression, and three common estimators are read off the smoothed curve:
``steep`` (steepest descent; Smith, torch-lr-finder, Lightning), ``minimum`` (a tenth
of the lr at the minimum; fastai) and ``valley`` (fastai's default).
"""

from __future__ import annotations

import bisect
import copy
import math
from dataclasses import dataclass, field

import torch

from fusedlr.schedules import ExponentialLR
from fusedlr.schedules._base import check_choice, check_float, check_int

#: The estimators ``find_lr`` reports, in the order they are reported.
METHODS = ("steep", "minimum", "valley")
_LABELS = {"steep": "steep", "minimum": "minimum/10", "valley": "valley"}
_Z = 4.0  # how many standard errors below the starting level counts as "the loss fell"


@dataclass
class LRFinderResult:
    """What ``find_lr`` measured.

    Attributes:
        lrs: the lr of each recorded step (from the schedule's ``values()``, i.e. what
            the kernel used).
        losses: the smoothed loss at each recorded step: a centred Gaussian-kernel local
            quadratic fit (see ``find_lr``), so it does not lag the raw loss. Steps from
            the divergence on (see ``find_lr``) are not smoothed: their raw loss is kept.
        raw_losses: the loss of each batch as computed.
        suggested_lr: ``suggestions[method]``.
        stopped_early: True if the sweep stopped on divergence before ``num_steps``.
        num_steps: the sweep length asked for.
        suggestions: every estimator side by side, ``{"steep": ..., "minimum": ...,
            "valley": ...}`` (see ``find_lr``); a value is None when the smoothed loss
            never fell measurably (or too few steps were recorded).
        method: the estimator ``suggested_lr`` comes from.
    """

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggested_lr: float | None
    stopped_early: bool
    num_steps: int = 0
    suggestions: dict[str, float | None] = field(default_factory=dict)
    method: str = "steep"
    _marks: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _used: int | None = field(default=None, repr=False)

    def plot(self, path=None, *, title: str | None = None):
        """Raw and smoothed loss against lr (log axis), every estimator marked (the one
        ``suggested_lr`` uses drawn solid); returns the Figure and writes a PNG when
        `path` is given.

        The y range is where the sweep is informative: from the lowest loss recorded
        (raw or smoothed) up to the highest smoothed loss before the minimum or the 98th
        percentile of the raw losses there, whichever is higher. The rise after the
        minimum and the divergence spike run off the top instead of flattening the
        curve.
        """
        from fusedlr.plotting import new_figure, save_png

        fig = new_figure()
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(self.lrs, self.raw_losses, color="0.7", linewidth=0.8, label="loss per batch")
        ax.plot(self.lrs, self.losses, color="C0", linewidth=1.8,
                label="smoothed loss (centred, no lag)")
        styles = {"steep": "C3", "minimum": "C2", "valley": "C1"}
        for name in METHODS:
            lr = self.suggestions.get(name)
            if lr is None:
                continue
            used = name == self.method
            x, y = self._marks[name]
            ax.axvline(lr, color=styles[name], linestyle="-" if used else "--",
                       linewidth=1.6 if used else 1.0, alpha=1.0 if used else 0.8)
            ax.plot([x], [y], "o", color=styles[name], markersize=8 if used else 6,
                    label=f"{_LABELS[name]} = {lr:.3g}" + ("  (suggested)" if used else ""))
        if "lr_at_min" in self._marks:
            x, y = self._marks["lr_at_min"]
            ax.plot([x], [y], "v", color=styles["minimum"], markersize=6, alpha=0.8,
                    label=f"minimum of smoothed loss (lr {x:.3g})")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        lim = _ylim(self.losses, self.raw_losses, self._used, self._marks)
        if lim is not None:
            ax.set_ylim(*lim)
        ax.set_title(title or f"LR range test ({len(self.lrs)} of {self.num_steps} steps)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        if path is not None:
            save_png(fig, path)
        return fig


def _quantile(values, q):
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q))


def _ylim(losses, raw, used, marks):
    """(bottom, top) of the plot's y axis, or None when nothing finite was recorded."""
    used = len(losses) if used is None else used
    smooth = [v for v in losses[:used] if math.isfinite(v)]
    raw_ok = [v for v in raw[:used] if math.isfinite(v)]
    if not smooth or not raw_ok:
        return None
    i_end = used
    if "lr_at_min" in marks:  # the informative part ends at the minimum
        i_end = min(range(used), key=lambda i: losses[i] if math.isfinite(losses[i]) else math.inf)
        i_end += 1
    before = [v for v in losses[:i_end] if math.isfinite(v)] or smooth
    raw_before = [v for v in raw[:i_end] if math.isfinite(v)] or raw_ok
    lo = min(min(smooth), min(raw_ok))  # losses are bounded below; spikes go up
    hi = max(max(before), _quantile(raw_before, 0.98))
    pad = 0.05 * (hi - lo) or 0.1 * abs(hi) or 1.0
    return lo - pad, hi + pad


def _smooth(values, sigma):
    """Centred Gaussian-kernel local quadratic regression (a Savitzky-Golay filter with
    Gaussian weights) of `values` on the step index, i.e. on log(lr).

    At each step i it fits ``a + b u + c u^2``, ``u = (j - i) / sigma``, to the points
    j with weights ``exp(-u^2 / 2)`` (cut at 4 sigma); the level is ``a``, the slope per
    step ``b / sigma``. Being centred it has no lag, and a quadratic keeps the depth and
    position of a minimum that a moving average would flatten and shift; near the ends
    the window is one-sided and the fit extrapolates. Also returns the standard error of
    each level, ``sqrt(e1' A^-1 (X' W^2 X) A^-1 e1) * s_i`` with ``s_i^2`` the
    kernel-weighted mean squared residual around i (the local batch noise).

    The weighted sums are convolutions of the data with ``w(u) u^k``, so the cost is
    O(n * sigma), not O(n^2).
    """
    n = len(values)
    y = torch.tensor(values, dtype=torch.float64)
    if sigma <= 0 or n < 3:
        slope = torch.gradient(y)[0] if n >= 2 else torch.zeros_like(y)
        return y, slope, torch.zeros_like(y)
    half = min(n - 1, math.ceil(4 * sigma))
    u = torch.arange(-half, half + 1, dtype=torch.float64) / sigma
    w = torch.exp(-0.5 * u * u)
    k1 = torch.stack([w * u**k for k in range(5)]).unsqueeze(1)
    k2 = torch.stack([w * w * u**k for k in range(5)]).unsqueeze(1)

    def corr(x, kernels):  # out[k, i] = sum_d kernels[k](d) * x[i + d], x = 0 outside
        return torch.nn.functional.conv1d(x.view(1, 1, n), kernels, padding=half)[0]

    def normal_matrix(m):  # [[m0, m1, m2], [m1, m2, m3], [m2, m3, m4]] per step
        return torch.stack([m[0:3], m[1:4], m[2:5]]).permute(2, 0, 1)

    ones = torch.ones_like(y)
    inv = torch.linalg.pinv(normal_matrix(corr(ones, k1)))
    coef = (inv @ corr(y, k1[:3]).T.unsqueeze(-1)).squeeze(-1)
    level, slope = coef[:, 0], coef[:, 1] / sigma
    # ||l_i||^2 for the hat-matrix row l_i (level_i = l_i . y) and its diagonal l_ii
    gain2 = (inv @ normal_matrix(corr(ones, k2)) @ inv)[:, 0, 0].clamp_min(0.0)
    # E[(y_i - level_i)^2] = noise^2 (1 - 2 l_ii + ||l_i||^2) for locally constant noise
    dof = (1.0 - 2.0 * inv[:, 0, 0] + gain2).clamp_min(1e-3)
    noise2 = corr((y - level) ** 2 / dof, k1[:1])[0] / corr(ones, k1[:1])[0]
    return level, slope, (noise2 * gain2).sqrt()


def _valley(losses) -> int:
    """Index of fastai's ``valley`` (fastai.callback.schedule): find the longest strictly
    decreasing subsequence of the losses (the first index ``end`` where one of maximal
    length ``k`` ends), take the valley as ``start = end - k + 1 .. end`` and return
    ``start + int(L/3) + int(L/6)``, ``L = end - start``: about half way along. (fastai
    uses ``start = end - k``, one step too early.) O(n log n) by patience sorting, where
    fastai's double loop is O(n^2)."""
    tails, lds = [], []  # tails[k]: the largest last value of a decreasing run of k + 1
    for v in losses:
        k = bisect.bisect_left(tails, -v)
        if k == len(tails):
            tails.append(-v)
        else:
            tails[k] = -v
        lds.append(k + 1)
    end = lds.index(max(lds))
    start = end - lds[end] + 1
    sections = (end - start) / 3
    return start + int(sections) + int(sections / 2)


def _interp(lrs, ys, lr):
    """ys at `lr`, linear in log(lr), clamped to the sweep."""
    if lr <= lrs[0]:
        return ys[0]
    if lr >= lrs[-1]:
        return ys[-1]
    j = bisect.bisect_right(lrs, lr)
    t = math.log(lr / lrs[j - 1]) / math.log(lrs[j] / lrs[j - 1])
    return ys[j - 1] + t * (ys[j] - ys[j - 1])


def _estimate(lrs, level, slope, se, skip):
    """The estimators on the smoothed curve of the usable steps (see ``find_lr``)."""
    none = dict.fromkeys(METHODS)
    n = len(level)
    if n - skip < 3:
        return none, {}
    level, slope, se = level.tolist(), slope.tolist(), se.tolist()
    imin = min(range(skip, n), key=lambda i: level[i])
    ref = skip

    def fell(i):
        return level[i] < level[ref] - _Z * math.hypot(se[i], se[ref])

    descent = [i for i in range(skip, imin + 1) if fell(i)]
    if not descent:  # the smoothed loss never fell measurably below where it started
        return none, {}
    steep = min(descent, key=lambda i: slope[i])
    valley = skip + _valley(level[skip:])
    minimum = lrs[imin] / 10
    suggestions = {"steep": lrs[steep], "minimum": minimum, "valley": lrs[valley]}
    marks = {
        "steep": (lrs[steep], level[steep]),
        "minimum": (minimum, _interp(lrs, level, minimum)),
        "valley": (lrs[valley], level[valley]),
        "lr_at_min": (lrs[imin], level[imin]),
    }
    return suggestions, marks


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
            num_steps=100, smooth=0.03, diverge_factor=4.0, method="steep") -> LRFinderResult:
    """Runs the LR range test and returns an :class:`LRFinderResult`.

    The lr grows exponentially from ``start_lr`` to ``end_lr`` over ``num_steps``
    batches. The sweep is an on-device schedule, ``ExponentialLR(gamma)`` with
    ``gamma = (end_lr / start_lr) ** (1 / (num_steps - 1))`` on base lr ``start_lr``,
    so the optimizer step is the one training uses.

    **Stopping.** The test stops once a bias-corrected exponential moving average of the
    batch loss, with span ``s = max(5, num_steps / 20)`` steps (weight ``1 - 1/s``),
    exceeds ``diverge_factor`` times its lowest value so far (for a negative loss: rises
    above it by ``diverge_factor - 1`` times its magnitude), or is not finite. The
    smoothing and the estimators use the steps before the divergence: before the first
    batch after the EMA's lowest point whose loss exceeds that same limit (or is not
    finite). That is the step that stopped the test or an earlier one; cutting there
    keeps the spike out of the fit.

    **Smoothing (no lag).** An EMA lags: with fastai's weight 0.98 the smoothed curve
    trails the raw loss by ~50 steps, about a decade of a 100-step sweep, which moves
    every estimator. Instead, once the sweep is over, the losses are smoothed by a
    *centred* Gaussian-kernel local quadratic regression on log(lr) (equivalently on
    the step index): each point is the value at i of a quadratic fitted to its
    neighbours with weights ``exp(-(j - i)^2 / (2 sigma^2))``. It has no lag, keeps the
    position and depth of the minimum, and gives the slope at each point from the same
    fit. The width scales with the sweep, ``sigma = smooth * num_steps`` steps (3 steps
    for 100 steps, a quarter decade of a 1e-7..10 sweep): a longer sweep averages more
    batches per window at the same resolution in lr.

    **Estimators**, all on the smoothed curve from step ``num_steps // 10`` on (as fastai
    and Lightning do; the first tenth is at lrs that barely train) to the last usable
    step, side by side in ``result.suggestions``:

    - ``"steep"`` (default): the lr where the smoothed loss falls fastest against log(lr)
      (Smith; torch-lr-finder, Lightning): the most negative slope of the local fit,
      among the points before the minimum where the loss fell measurably (below);
    - ``"minimum"``: a tenth of the lr at the minimum of the smoothed loss (fastai's
      ``minimum``), a conservative choice;
    - ``"valley"``: fastai's ``valley``, half way along the longest decreasing
      subsequence of the smoothed loss; conservative when the loss is flat and smooth
      at small lrs, since that flat part joins the valley.

    ``method`` picks the one returned as ``suggested_lr``. Robustness to batch noise at
    tiny lrs: the steepest-descent search only considers points where the smoothed loss
    is measurably below its level at the first considered step, by more than 4 standard
    errors of the difference (each from the local scatter of the raw losses around the
    fit), so a noise wiggle in the flat start cannot be picked. If no point is, the loss
    never fell and every estimator is None (on pure noise this happens in ~99% of 100-step
    sweeps). With ``smooth=0`` there is no noise estimate and any fall counts.

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
        start_lr, end_lr, num_steps: the sweep.
        smooth: the smoothing kernel's width as a fraction of ``num_steps``, in
            [0, 0.5]; 0 turns smoothing off. (Not an EMA weight: fastai's 0.98 would be
            a window of the whole sweep, so values above 0.5 are refused.)
        diverge_factor: the stopping threshold, > 1.
        method: ``"steep"``, ``"minimum"`` or ``"valley"``.

    Afterwards the model's parameters and buffers, its train/eval mode, the parameters'
    ``.grad``, the global torch RNG state and (when an optimizer was passed) the
    optimizer's state, param groups and schedule counter are restored bit-identically,
    in place.
    """
    from fusedlr.optim import _FusedOptimizer

    start_lr = check_float("start_lr", start_lr, 0.0, owner="find_lr", strict_min=True)
    end_lr = check_float("end_lr", end_lr, start_lr, owner="find_lr", strict_min=True)
    num_steps = check_int("num_steps", num_steps, 2, owner="find_lr")
    smooth = check_float("smooth", smooth, owner="find_lr")
    if not 0.0 <= smooth <= 0.5:
        raise ValueError(
            f"find_lr: smooth must be in [0, 0.5] (the smoothing width as a fraction of "
            f"num_steps; default 0.03), got {smooth}. It is no longer an EMA weight."
        )
    diverge_factor = check_float("diverge_factor", diverge_factor, 1.0, owner="find_lr",
                                 strict_min=True)
    method = check_choice("method", method, METHODS, owner="find_lr")
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

    lrs, raw = [], []
    stopped_early = False
    best_step = 0
    span = max(5.0, num_steps / 20)
    beta = 1.0 - 1.0 / span
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
            lrs.append(lr_values[i])
            raw.append(value)
            avg = beta * avg + (1.0 - beta) * value
            ema = avg / (1.0 - beta ** (i + 1))
            if not math.isfinite(ema) or ema > best + (diverge_factor - 1) * abs(best):
                stopped_early = i < num_steps - 1
                break
            if ema < best:
                best, best_step = ema, i
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

    # Smooth up to the divergence: the first batch after the EMA's best whose loss exceeds
    # diverge_factor times that best (or is not finite). The step that stopped the test
    # is one (its EMA can only cross the threshold if its loss does); it can be earlier,
    # and cutting there keeps a spike out of the fit, where it would ring.
    limit = best + (diverge_factor - 1) * abs(best)
    used = next((i for i in range(best_step + 1, len(raw))
                 if not raw[i] <= limit), len(raw)) if math.isfinite(best) else 0
    level, slope, se = _smooth(raw[:used], smooth * num_steps)
    suggestions, marks = _estimate(lrs[:used], level, slope, se, num_steps // 10)
    return LRFinderResult(
        lrs=lrs,
        losses=level.tolist() + raw[used:],
        raw_losses=raw,
        suggested_lr=suggestions[method],
        stopped_early=stopped_early,
        num_steps=num_steps,
        suggestions=suggestions,
        method=method,
        _marks=marks,
        _used=used,
    )
