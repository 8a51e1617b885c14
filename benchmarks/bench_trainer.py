#!/usr/bin/env python
"""A whole HF Trainer training step: fusedlr's recipe against Trainer's default, interleaved.

Full run (the command behind benchmarks/RESULTS_trainer.md; about 2-3 minutes on 2 cores):

    python benchmarks/bench_trainer.py --out benchmarks/RESULTS_trainer.md

Smoke run (tiny model, 2 rounds of a few steps, nothing written unless --out):

    python benchmarks/bench_trainer.py --quick

The two variants, same model init, data, seed and TrainingArguments (``optim="adamw_torch_fused"``,
``lr_scheduler_type="cosine"``, ``warmup_steps=0.1``, ``weight_decay=0.01``,
``max_grad_norm=1.0``, fp32, CPU):

  * torch:   ``transformers.Trainer``: ``torch.optim.AdamW(fused=True)`` + HF's cosine LambdaLR;
  * fusedlr: ``fusedlr.integrations.transformers.FusedLRTrainer``: ``fusedlr.AdamW`` with the
             cosine on the device, ``DeviceScheduleView`` as Trainer's scheduler.

A callback takes timestamps at ``on_step_begin`` (before the forward), ``on_pre_optimizer_step``
(after backward and clipping), ``on_optimizer_step`` (after ``optimizer.step()``) and
``on_step_end`` (after Trainer's ``_get_learning_rate()``, ``lr_scheduler.step()`` and
``zero_grad``). Reported per variant: the whole step (begin -> end), the optimizer step
(pre -> post), and the lr bookkeeping (post -> end). Fetching the batch happens before
``on_step_begin`` and logging after ``on_step_end`` (logging is off anyway): neither is timed.

Rounds alternate the variants (ABBA order, so slow drift in machine load hits both alike); each
round trains each variant for ``--steps`` steps with a fresh Trainer, the first ``--warmup``
steps (optimizer state allocation, allocator warm-up) dropped. A round yields the median of its
steps per variant; reported are the median over rounds (and the min-max of the round medians),
and the speedup as the median of per-round ratios torch / fusedlr (paired, so load drift cancels).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import fusedlr  # noqa: E402
from fusedlr.integrations.transformers import FusedLRTrainer  # noqa: E402

SEGMENTS = ("step", "optimizer", "lr bookkeeping", "of which _get_learning_rate")


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seq, vocab):
        self.ids = torch.randint(0, vocab, (n, seq), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class StepClock(TrainerCallback):
    """Timestamps of the parts of each training step."""

    def __init__(self):
        self.marks = []
        self.lr_reads = []  # Trainer._get_learning_rate(), timed by a wrapper (see train_once)

    def timed_lr_read(self, get_learning_rate):
        def wrapper():
            start = time.perf_counter()
            value = get_learning_rate()
            self.lr_reads.append(time.perf_counter() - start)
            return value
        return wrapper

    def on_step_begin(self, args, state, control, **kwargs):
        self.marks.append([time.perf_counter()])

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.marks[-1].append(time.perf_counter())

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.marks[-1].append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs):
        self.marks[-1].append(time.perf_counter())

    def segments(self, warmup):
        """Per segment, the times (s) of the steps after the warm-up."""
        rows = [m for m in self.marks[warmup:] if len(m) == 4]
        return {"step": [d - a for a, b, c, d in rows],
                "optimizer": [c - b for a, b, c, d in rows],
                "lr bookkeeping": [d - c for a, b, c, d in rows],
                "of which _get_learning_rate": self.lr_reads[warmup:]}


def model_config(quick):
    if quick:
        return GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=128, n_positions=16,
                          bos_token_id=0, eos_token_id=0)
    return GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=4096, n_positions=64,
                      bos_token_id=0, eos_token_id=0)


def train_once(variant, init_state, config, data, steps, batch, out_dir):
    """Trains one variant from init_state; returns (StepClock, final training loss)."""
    model = GPT2LMHeadModel(config)
    model.load_state_dict(init_state)
    args = TrainingArguments(
        output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch,
        learning_rate=1e-3, optim="adamw_torch_fused", lr_scheduler_type="cosine",
        warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0, logging_steps=10**9,
        save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
        log_level="error", dataloader_num_workers=0,
    )
    clock = StepClock()
    cls = FusedLRTrainer if variant == "fusedlr" else Trainer
    trainer = cls(model=model, args=args, train_dataset=data, callbacks=[clock])
    trainer._get_learning_rate = clock.timed_lr_read(trainer._get_learning_rate)
    with contextlib.redirect_stdout(io.StringIO()):
        result = trainer.train()
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    expected = fusedlr.AdamW if variant == "fusedlr" else torch.optim.AdamW
    assert type(inner) is expected, type(inner)
    return clock, result.training_loss, trainer


def warm_lr_read(trainer, repeats=2000):
    """Seconds per Trainer._get_learning_rate() in a hot loop (caches warm), after training
    (call after reading the StepClock: its wrapper records these calls too)."""
    start = time.perf_counter()
    for _ in range(repeats):
        trainer._get_learning_rate()
    return (time.perf_counter() - start) / repeats


def machine_lines(threads):
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            info = [line.split(":", 1) for line in f if ":" in line]
        fields = {key.strip(): value.strip() for key, value in reversed(info)}
        cpu = f"{fields.get('model name', cpu)} ({fields.get('cpu MHz', '?')} MHz)"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores; no GPU used (use_cpu=True)",
        f"- torch {torch.__version__} ({threads} intra-op threads), transformers "
        f"{transformers.__version__}, fusedlr {fusedlr.__version__}, Python "
        f"{platform.python_version()}",
        f"- load average (1, 5, 15 min) at the start: {load}",
    ]


def ms(values):
    return f"{1e3 * statistics.median(values):.4g}"


def spread(values):
    return f"{1e3 * min(values):.4g}-{1e3 * max(values):.4g}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="first steps of a run not timed")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, 2 rounds")
    parser.add_argument("--out", help="write the results (markdown) to this file")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.rounds, opts.steps, opts.warmup, opts.batch, opts.seq = 2, 6, 2, 2, 16
    torch.set_num_threads(opts.threads)
    transformers.logging.set_verbosity_error()

    config = model_config(opts.quick)
    torch.manual_seed(0)
    init_state = GPT2LMHeadModel(config).state_dict()
    n_params = sum(v.numel() for v in init_state.values())
    data = Tokens(opts.batch * opts.steps, opts.seq, config.vocab_size)
    lines = machine_lines(opts.threads)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    per_round = {v: {s: [] for s in SEGMENTS} for v in ("torch", "fusedlr")}
    losses, warm = {}, {}
    with tempfile.TemporaryDirectory() as out_dir:
        for r in range(opts.rounds):
            order = ("torch", "fusedlr") if r % 2 == 0 else ("fusedlr", "torch")
            for variant in order:
                clock, losses[variant], trainer = train_once(variant, init_state, config, data,
                                                             opts.steps, opts.batch, out_dir)
                for segment, times in clock.segments(opts.warmup).items():
                    per_round[variant][segment].append(statistics.median(times))
                warm.setdefault(variant, []).append(warm_lr_read(trainer))
            print(f"round {r + 1}/{opts.rounds}: step torch "
                  f"{ms([per_round['torch']['step'][-1]])} ms, fusedlr "
                  f"{ms([per_round['fusedlr']['step'][-1]])} ms", file=sys.stderr)

    lines.append(f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    lines.append(f"- run: {started}; command: `python benchmarks/bench_trainer.py"
                 f"{' --quick' if opts.quick else ''} --rounds {opts.rounds} --steps {opts.steps}"
                 f" --warmup {opts.warmup} --batch {opts.batch} --seq {opts.seq}"
                 f" --threads {opts.threads}`")
    model = (f"GPT-2 {config.n_layer} layers, d_model {config.n_embd}, {config.n_head} heads, "
             f"vocab {config.vocab_size}, {n_params / 1e6:.2f} M params; batch {opts.batch} x "
             f"{opts.seq} tokens, fp32")
    table = [
        "| segment | Trainer + torch AdamW(fused=True) + cosine LambdaLR, ms | FusedLRTrainer "
        "(fusedlr.AdamW, cosine on the device), ms | speedup (torch / fusedlr) |",
        "|---|---|---|---|",
    ]
    for segment in SEGMENTS:
        a, b = per_round["torch"][segment], per_round["fusedlr"][segment]
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        table.append(f"| {segment} | {ms(a)} ({spread(a)}) | {ms(b)} ({spread(b)}) | "
                     f"{ratio:.2f}x |")
    report = "\n".join([
        "# HF Trainer step: fusedlr recipe vs Trainer's default",
        "",
        "`benchmarks/bench_trainer.py` (method in its header): a whole Trainer training step "
        "(forward, backward, clip, optimizer step, lr bookkeeping) on the CPU, the two variants "
        "interleaved in one process.",
        "",
        "## Machine and command",
        "",
        *lines,
        f"- model: {model}",
        f"- {opts.rounds} rounds x {opts.steps} steps per variant, first {opts.warmup} steps of "
        "each run not timed",
        "",
        "## Results",
        "",
        "Median over rounds of each round's median step time (min-max of the round medians in "
        "parentheses); speedup: median of the per-round ratios.",
        "",
        *table,
        "",
        f"Final training loss (sanity: same math): torch {losses['torch']:.6f}, fusedlr "
        f"{losses['fusedlr']:.6f}.",
        "",
        "`_get_learning_rate()` in a hot loop after training (caches warm; median over runs): "
        f"torch (LambdaLR.get_last_lr) {1e6 * statistics.median(warm['torch']):.1f} us, "
        f"fusedlr (DeviceScheduleView -> get_host_lr) "
        f"{1e6 * statistics.median(warm['fusedlr']):.1f} us.",
        "",
        "Reading the numbers: *optimizer* is `optimizer.step()` alone (torch's fused AdamW vs "
        "fusedlr's kernel, the cosine evaluated inside it). *lr bookkeeping* is what Trainer "
        "does next: `_get_learning_rate()`, `lr_scheduler.step()` (HF's LambdaLR computes and "
        "writes the lrs; fusedlr's view only counts) and `model.zero_grad()`. fusedlr's "
        "`_get_learning_rate()` is `get_host_lr()`: a few torch calls on the host (the schedule "
        "op on CPU tensors, two small tensors), the hot-loop figure above with warm caches; in "
        "the step it is the first torch work after the optimizer has streamed every parameter "
        "and its state through the caches, where any torch call is many times slower, while "
        "LambdaLR's `get_last_lr()` returns a stored list. That cost is fixed per step (it does "
        "not grow with the model); the whole step is the figure that counts.",
        "",
    ])
    print(report)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
