"""``fusedlr demo --schedule-free``: the demo's MLP and digits batches (fusedlr/demo.py) trained
with schedule-free SGD: ``schedulefree.SGDScheduleFree`` (when installed) and
``fusedlr.SGDScheduleFree`` from the same seed, weights and batches, with one epoch of the
package's linear warmup and no other schedule. Accuracy is measured at the averaged point x
(``opt.eval()``) after every epoch; the model has no BatchNorm, so no statistics need
recomputing (see fusedlr/schedule_free.py for the recipe when it has).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

import fusedlr
from fusedlr.demo import (
    Run,
    _accuracy,
    epoch_batches,
    load_digits_data,
    make_model,
    steps_per_epoch,
)

LR = 0.5
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


def train_schedule_free(kind: str, data, epochs: int, seed: int = 0) -> Run:
    """kind = "fusedlr" or "schedulefree" (the package); the history of one run."""
    spe = steps_per_epoch(data)
    model = make_model(seed)
    kw = dict(lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, warmup_steps=spe)
    if kind == "fusedlr":
        opt = fusedlr.SGDScheduleFree(model.parameters(), **kw)
    elif kind == "schedulefree":
        import schedulefree

        opt = schedulefree.SGDScheduleFree(model.parameters(), **kw)
    else:
        raise ValueError(f"unknown optimizer kind {kind!r}")
    run = Run(f"{type(opt).__module__}.{type(opt).__name__}")
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        opt.train()
        losses = []
        for x, y in epoch_batches(data, epoch, seed):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            t0 = time.perf_counter()
            opt.step()
            run.step_seconds.append(time.perf_counter() - t0)
            losses.append(loss.detach())
        opt.eval()  # params hold x: evaluate (and checkpoint) there
        epoch_losses = torch.stack(losses).tolist()
        run.step_loss.extend(epoch_losses)
        run.epoch_loss.append(sum(epoch_losses) / len(epoch_losses))
        run.epoch_acc.append(_accuracy(model, data))
    run.final_params = [p.detach().clone() for p in model.parameters()]
    return run


@dataclass
class ScheduleFreeDemo:
    runs: list[Run]
    report: str


def run_schedule_free_demo(epochs: int = 10, seed: int = 0,
                           threads: int = 1) -> ScheduleFreeDemo:
    torch.set_num_threads(threads)
    data = load_digits_data(seed)
    kinds = ["fusedlr"]
    try:
        import schedulefree  # noqa: F401

        kinds.insert(0, "schedulefree")
    except ImportError:
        pass
    runs = [train_schedule_free(k, data, epochs, seed) for k in kinds]
    lines = [f"Schedule-free SGD (lr {LR}, momentum {MOMENTUM}, weight decay {WEIGHT_DECAY}, "
             f"warmup 1 epoch = {steps_per_epoch(data)} steps), {epochs} epochs, accuracy at x:",
             "epoch  " + "  ".join(f"{r.name:>34}" for r in runs)]
    for e in range(epochs):
        cells = "  ".join(f"loss {r.epoch_loss[e]:.4f} acc {r.epoch_acc[e]:7.2%}".rjust(34)
                          for r in runs)
        lines.append(f"{e + 1:>5}  {cells}")
    for r in runs:
        lines.append(f"{r.name}: median optimizer step {r.median_step_us:.0f} us")
    if len(runs) == 2:
        diff = max((a - b).abs().max().item()
                   for a, b in zip(runs[0].final_params, runs[1].final_params, strict=True))
        lines.append(f"largest |param difference| at the end: {diff:.2e} (float32 rounding)")
    else:
        lines.append("(pip install schedulefree to train with the package side by side)")
    return ScheduleFreeDemo(runs, "\n".join(lines))
