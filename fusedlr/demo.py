"""``fusedlr demo``: the same small network trained twice on scikit-learn's digits, once
with ``torch.optim.SGD`` + ``torch.optim.lr_scheduler`` and once with
``fusedlr.SGD(schedule=...)``, from the same seed and the same batches.

The data set ships inside scikit-learn (1797 8x8 images, no download). The schedule is
one epoch of linear warmup then cosine annealing to 0, stepped every batch:

- torch:   ``SequentialLR(opt, [LinearLR(opt, 0.1, 1.0, W), CosineAnnealingLR(opt, T - W)], [W])``
           with ``scheduler.step()`` after every ``optimizer.step()``;
- fusedlr: ``fusedlr.SGD(..., schedule=SequentialLR([LinearLR(0.1, 1.0, W),
           CosineAnnealingLR(T - W)], [W]))`` and nothing else.

Both runs see identical initial weights and batches, so they should agree to float32
rounding. The optimizer time per step is measured around ``optimizer.step()`` (plus
``scheduler.step()`` for torch).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

import fusedlr
from fusedlr.schedules import CosineAnnealingLR, LinearLR, SequentialLR

BATCH_SIZE = 64
HIDDEN = 128
LR = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
WARMUP_START = 0.1  # warmup starts at LR * WARMUP_START
DEFAULT_EPOCHS = 15
QUICK_EPOCHS = 3


def _require(*modules: str) -> None:
    missing = []
    for m in modules:
        try:
            __import__(m)
        except ImportError:
            missing.append({"sklearn": "scikit-learn"}.get(m, m))
    if missing:
        raise ImportError(
            f"fusedlr demo needs {', '.join(missing)}: pip install {' '.join(missing)} "
            "(or pip install fusedlr[tools])"
        )


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_data(seed: int = 0) -> Data:
    """scikit-learn's digits as float32 tensors: 1437 training and 360 test images."""
    _require("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x / 16.0, y, test_size=0.2, random_state=seed, stratify=y
    )
    f32 = torch.float32
    return Data(
        torch.tensor(x_tr, dtype=f32), torch.tensor(y_tr, dtype=torch.int64),
        torch.tensor(x_te, dtype=f32), torch.tensor(y_te, dtype=torch.int64),
    )


def make_model(seed: int = 0) -> torch.nn.Module:
    """A 64-128-128-10 MLP with ReLU, initialised from `seed`."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, 10),
    )


def steps_per_epoch(data: Data) -> int:
    return -(-len(data.y_train) // BATCH_SIZE)


def epoch_batches(data: Data, epoch: int, seed: int = 0):
    """The shuffled (inputs, targets) batches of one epoch; the same for every run."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(data.y_train), generator=g)
    for i in range(0, len(order), BATCH_SIZE):
        idx = order[i : i + BATCH_SIZE]
        yield data.x_train[idx], data.y_train[idx]


def demo_schedule(spe: int, epochs: int) -> SequentialLR:
    """One epoch of linear warmup from 0.1x, then cosine to 0, in optimizer steps."""
    total = spe * epochs
    return SequentialLR(
        [LinearLR(WARMUP_START, 1.0, spe), CosineAnnealingLR(max(total - spe, 1))], [spe]
    )


def _torch_scheduler(opt, spe: int, epochs: int):
    sched = torch.optim.lr_scheduler
    total = spe * epochs
    return sched.SequentialLR(
        opt,
        [sched.LinearLR(opt, WARMUP_START, 1.0, spe),
         sched.CosineAnnealingLR(opt, max(total - spe, 1))],
        milestones=[spe],
    )


@dataclass
class Run:
    """History of one training run."""

    name: str
    epoch_loss: list[float] = field(default_factory=list)
    epoch_acc: list[float] = field(default_factory=list)
    epoch_lr: list[float] = field(default_factory=list)  # lr of the next step, at epoch end
    step_loss: list[float] = field(default_factory=list)
    step_lr: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)  # optimizer time per step
    final_params: list[torch.Tensor] = field(default_factory=list)

    @property
    def median_step_us(self) -> float:
        return 1e6 * statistics.median(self.step_seconds)


def _accuracy(model, data: Data) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(data.x_test).argmax(dim=1)
    model.train()
    return float((pred == data.y_test).double().mean())


def train(kind: str, data: Data, epochs: int, seed: int = 0, progress: bool = True) -> Run:
    """Trains the demo model with ``kind`` = "torch" or "fusedlr"; returns its history."""
    _require("tqdm")
    from tqdm import tqdm

    spe = steps_per_epoch(data)
    model = make_model(seed)
    loss_fn = torch.nn.CrossEntropyLoss()
    if kind == "torch":
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                              weight_decay=WEIGHT_DECAY)
        sched = _torch_scheduler(opt, spe, epochs)
        run = Run("torch.optim.SGD + lr_scheduler")
    elif kind == "fusedlr":
        spec = demo_schedule(spe, epochs)
        opt = fusedlr.SGD(model.parameters(), lr=LR, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY, schedule=spec)
        sched = None
        run = Run("fusedlr.SGD(schedule=...)")
        run.step_lr = spec.values(spe * epochs, LR).tolist()  # what the kernel uses
    else:
        raise ValueError(f"unknown optimizer kind {kind!r}")

    bar = tqdm(total=spe * epochs, desc=f"{kind:>7}", unit="step", file=sys.stderr,
               disable=not progress, leave=False, dynamic_ncols=True)
    perf = time.perf_counter
    for epoch in range(epochs):
        losses = []
        for x, y in epoch_batches(data, epoch, seed):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            if sched is not None:
                run.step_lr.append(opt.param_groups[0]["lr"])
                t0 = perf()
                opt.step()
                sched.step()
                run.step_seconds.append(perf() - t0)
            else:
                t0 = perf()
                opt.step()
                run.step_seconds.append(perf() - t0)
            losses.append(loss.detach())
            bar.update(1)
        epoch_losses = torch.stack(losses).tolist()  # one sync per epoch
        run.step_loss.extend(epoch_losses)
        run.epoch_loss.append(sum(epoch_losses) / len(epoch_losses))
        run.epoch_acc.append(_accuracy(model, data))
        lr = sched.get_last_lr()[0] if sched is not None else float(opt.get_last_lr()[0])
        run.epoch_lr.append(lr)
        bar.set_postfix(loss=f"{run.epoch_loss[-1]:.4f}", acc=f"{run.epoch_acc[-1]:.1%}")
    bar.close()
    run.final_params = [p.detach().clone() for p in model.parameters()]
    return run


@dataclass
class DemoResult:
    torch_run: Run
    fusedlr_run: Run
    epochs: int
    steps_per_epoch: int
    report: str
    files: list[str]


def format_report(tr: Run, fr: Run, data: Data, epochs: int, spe: int, seed: int) -> str:
    n_tr, n_te = len(data.y_train), len(data.y_test)
    spec = demo_schedule(spe, epochs)
    lines = [
        f"fusedlr demo: MLP 64-{HIDDEN}-{HIDDEN}-10 on scikit-learn digits ({n_tr} train / "
        f"{n_te} test), batch {BATCH_SIZE}, {spe} steps/epoch, {epochs} epochs, seed {seed}",
        f"SGD lr={LR} momentum={MOMENTUM} weight_decay={WEIGHT_DECAY}, lr stepped every batch:",
        f"  schedule = {spec!r}",
        "",
        f"{'':5}  {'torch.optim.SGD + lr_scheduler':<32}  {'fusedlr.SGD(schedule=...)':<32}",
        f"{'epoch':>5}  {'loss':>9} {'test acc':>9} {'lr':>10}    {'loss':>9} {'test acc':>9} "
        f"{'lr':>10}",
    ]
    for e in range(epochs):
        lines.append(
            f"{e + 1:>5}  {tr.epoch_loss[e]:>9.5f} {tr.epoch_acc[e]:>9.2%} {tr.epoch_lr[e]:>10.6f}"
            f"    {fr.epoch_loss[e]:>9.5f} {fr.epoch_acc[e]:>9.2%} {fr.epoch_lr[e]:>10.6f}"
        )
    lr_diff = max(abs(a - b) for a, b in zip(tr.step_lr, fr.step_lr, strict=True))
    p_diff = max(float((a - b).abs().max())
                 for a, b in zip(tr.final_params, fr.final_params, strict=True))
    n = len(tr.step_seconds)
    lines += [
        "(loss: mean training loss of the epoch; lr: the lr of the next step)",
        "",
        f"optimizer time per step, median of {n} steps "
        f"(CPU, {_plural(torch.get_num_threads(), 'thread')}):",
        f"  torch.optim.SGD.step() + SequentialLR.step(): {tr.median_step_us:8.1f} us",
        f"  fusedlr.SGD.step():                           {fr.median_step_us:8.1f} us",
        f"max |lr difference| over all {n} steps: {lr_diff:.3g}; "
        f"max |weight difference| at the end: {p_diff:.3g}",
    ]
    return "\n".join(line.rstrip() for line in lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def write_plots(tr: Run, fr: Run, spe: int, out_dir: str) -> list[str]:
    from fusedlr.plotting import new_figure, save_png

    os.makedirs(out_dir, exist_ok=True)
    steps = range(len(tr.step_loss))
    paths = []
    for what, ylabel, name, log in (
        ("step_loss", "training loss (per batch)", "demo_loss.png", True),
        ("step_lr", "learning rate", "demo_lr.png", False),
    ):
        fig = new_figure()
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(steps, getattr(tr, what), label=tr.name, linewidth=2.2, alpha=0.6)
        ax.plot(steps, getattr(fr, what), "--", label=fr.name, linewidth=1.2, color="C3")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(f"optimizer step ({spe} per epoch)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        paths.append(save_png(fig, os.path.join(out_dir, name)))
    return paths


def run_demo(epochs: int | None = None, out_dir: str = ".", quick: bool = False, seed: int = 0,
             progress: bool = True, plots: bool = True, threads: int | None = 1) -> DemoResult:
    """Trains with torch and with fusedlr, writes the PNGs; returns the histories and report.

    ``threads``: torch CPU threads during the demo (restored afterwards); 1 by default,
    since the model is tiny and timings are steadier (None keeps torch's setting).
    """
    if epochs is None:
        epochs = QUICK_EPOCHS if quick else DEFAULT_EPOCHS
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 2:
        raise ValueError(f"epochs must be an integer >= 2 (one warmup epoch, then cosine), "
                         f"got {epochs!r}")
    _require("sklearn", "tqdm", "matplotlib")
    data = load_digits_data(seed)
    spe = steps_per_epoch(data)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        tr = train("torch", data, epochs, seed, progress)
        fr = train("fusedlr", data, epochs, seed, progress)
        report = format_report(tr, fr, data, epochs, spe, seed)
    finally:
        torch.set_num_threads(saved_threads)
    files = write_plots(tr, fr, spe, out_dir) if plots else []
    return DemoResult(tr, fr, epochs, spe, report, files)


def find_lr_demo(out_path: str = "find_lr.png", num_steps: int = 100, start_lr: float = 1e-7,
                 end_lr: float = 10.0, seed: int = 0, method: str = "steep"):
    """The LR range test on the demo model and data with fusedlr.SGD (momentum 0.9)."""
    import functools

    _require("sklearn", "matplotlib")
    from fusedlr.lr_finder import find_lr

    data = load_digits_data(seed)
    model = make_model(seed)

    def loader():
        epoch = 0
        while True:
            yield from epoch_batches(data, epoch, seed)
            epoch += 1

    result = find_lr(model, torch.nn.CrossEntropyLoss(), loader(),
                     functools.partial(fusedlr.SGD, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
                     start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, method=method)
    if out_path:
        result.plot(out_path, title="LR range test: demo MLP on digits, fusedlr.SGD momentum 0.9")
    return result
