"""Plots of learning-rate schedules, from the same C++ the optimizer kernels run.

``fusedlr.plot`` draws ``schedule.values()``: the curve is what training uses, not a
second implementation of the formula. Figures are built on matplotlib's Agg canvas
directly (no pyplot, no global backend switch), so plotting works headless and leaves
an interactive session's backend alone.

(The module is ``plotting``, not ``plot``: a submodule named like the package-level
function ``fusedlr.plot`` would replace that attribute when imported.)
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable

import torch

from fusedlr.schedules import Schedule

FIGSIZE = (8.0, 4.5)  # inches
DPI = 100  # so a PNG is 800 x 450 pixels (taller when the legend needs more than 4 lines)
LEGEND_WRAP = 115  # characters per legend line
_LEGEND_FREE_LINES = 4
_INCHES_PER_LEGEND_LINE = 0.17


def new_figure(figsize=FIGSIZE, dpi=DPI):
    """A matplotlib Figure on an Agg canvas (no pyplot state)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fusedlr plots need matplotlib: pip install matplotlib (or fusedlr[tools])"
        ) from None
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path) -> str:
    """Writes `fig` as a PNG of exactly figsize * dpi pixels; returns the path."""
    path = os.fspath(path)
    fig.savefig(path, format="png", dpi=fig.dpi)
    return path


def _label(text: str) -> str:
    return textwrap.fill(text, LEGEND_WRAP, subsequent_indent="    ", break_long_words=True)


def figure_size(labels) -> tuple[float, float]:
    """Figure size in inches for a legend of `labels` (placed under the axes)."""
    lines = sum(label.count("\n") + 1 for label in labels)
    extra = max(0, lines - _LEGEND_FREE_LINES) * _INCHES_PER_LEGEND_LINE
    return FIGSIZE[0], round(FIGSIZE[1] + extra, 2)


def _curves(schedules, steps: int, base_lr: float):
    """(label, x, y) per curve. For an optimizer: one per param group, over optimizer steps."""
    if isinstance(schedules, torch.optim.Optimizer):
        return _optimizer_curves(schedules, steps), "optimizer step"
    if isinstance(schedules, Schedule):
        schedules = [schedules]
    elif isinstance(schedules, Iterable) and not isinstance(schedules, (str, bytes)):
        schedules = list(schedules)
    else:
        raise TypeError(
            "plot: expected a schedule, a list of schedules or a fusedlr optimizer, got "
            f"{type(schedules).__name__}"
        )
    if not schedules:
        raise ValueError("plot: no schedules given")
    curves = []
    for i, s in enumerate(schedules):
        if not isinstance(s, Schedule):
            raise TypeError(
                f"plot: schedules[{i}] is a {type(s).__name__}, not a fusedlr.schedules spec"
            )
        y = s.values(steps, base_lr)
        curves.append((repr(s), torch.arange(steps), y))
    return curves, "scheduler step (t)"


def _optimizer_curves(opt, steps: int):
    """Per group: lr of optimizer step k = group lr * schedule(k // steps_per_epoch)."""
    from fusedlr.optim import _FusedOptimizer

    if not isinstance(opt, _FusedOptimizer):
        raise TypeError(
            f"plot: {type(opt).__name__} is not a fusedlr optimizer (SGD, Adam, AdamW); "
            "pass its schedule specs instead"
        )
    curves = []
    for i, group in enumerate(opt.param_groups):
        sched, lr, spe = group["schedule"], float(group["lr"]), int(group["steps_per_epoch"])
        if sched is None:
            y = torch.full((steps,), lr, dtype=torch.float64)
            desc = "no schedule"
        else:
            y = sched.values(math.ceil(steps / spe), lr, group=i).repeat_interleave(spe)[:steps]
            desc = repr(sched)
        per = f", steps_per_epoch={spe}" if spe != 1 else ""
        curves.append((f"group {i} (lr={lr:g}{per}): {desc}", torch.arange(steps), y))
    return curves


def plot(schedules, steps: int, base_lr: float = 1.0, path=None, *, log_y: bool = False,
         title: str | None = None):
    """Plots learning-rate schedules; returns the matplotlib ``Figure``.

    Args:
        schedules: a ``fusedlr.schedules`` spec, a list of them, or a fusedlr optimizer
            (one curve per param group, using the group's ``schedule``, ``lr`` and
            ``steps_per_epoch``; x is then the optimizer step).
        steps: how many steps to draw (t = 0 .. steps-1).
        base_lr: the lr the schedules scale (ignored for an optimizer, whose groups
            carry their own; absolute schedules ignore it anyway).
        path: if given, a PNG is written there: 800 x 450 pixels, 17 pixels taller per
            legend line beyond 4 (the legend sits under the axes).
        log_y: logarithmic lr axis.
        title: figure title.

    Every value comes from ``schedule.values()``, i.e. from the C++ the kernels run. For an
    optimizer the curves start at step 0 and show the scheduled lr, before any
    ``ReduceLROnPlateau`` scaling.

    >>> from fusedlr.schedules import StepLR
    >>> fig = plot([StepLR(2, 0.5)], steps=6, base_lr=0.1)
    >>> fig.axes[0].lines[0].get_ydata().tolist()
    [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    """
    from fusedlr.schedules._base import check_float, check_int

    steps = check_int("steps", steps, 1, owner="plot")
    base_lr = check_float("base_lr", base_lr, 0.0, owner="plot")
    curves, xlabel = _curves(schedules, steps, base_lr)

    labels = [_label(label) for label, _, _ in curves]
    fig = new_figure(figure_size(labels))
    ax = fig.add_subplot(1, 1, 1)
    for label, (_, x, y) in zip(labels, curves, strict=True):
        ax.plot(x.numpy(), y.numpy(), label=label, linewidth=1.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("learning rate")
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(0.0, -0.14), ncols=1,
              frameon=False)
    fig.tight_layout()
    if path is not None:
        save_png(fig, path)
    return fig
