#!/usr/bin/env python
"""The standard optimizer phase: gradient clipping + AdamW step + cosine schedule, fusedlr
against what a torch user writes, side by side in one process.

    python benchmarks/bench_clip.py [--repeats 15] [--out benchmarks/RESULTS_clip.md]

fusedlr: ``fusedlr.AdamW(..., max_grad_norm=1.0, schedule=CosineAnnealingLR)`` and
``opt.step()``. torch: ``torch.optim.AdamW(fused=True)`` + ``CosineAnnealingLR`` and
``clip_grad_norm_(params, 1.0, foreach=True); opt.step(); sched.step()``. Cases: one fp32
tensor of 16.8M elements, 400 x 256 and 2000 x 64. The grads are scaled so that every step
clips. Samples are taken round robin; each times ``inner`` steps (the grads are restored
from a saved copy before each sample, outside the timing: torch's clipping rewrites them);
reported: the median time per step, min-max, and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import fusedlr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import machine, round_robin, summarize, write_results  # noqa: E402

CASES = {"large": [1 << 24], "400x256": [256] * 400, "2000x64": [64] * 2000}


def _variants():
    def ours(ps):
        opt = fusedlr.AdamW(ps, lr=1e-3, weight_decay=0.01, max_grad_norm=1.0,
                            schedule=fusedlr.schedules.CosineAnnealingLR(T_max=10_000))
        return opt.step

    def theirs(ps):
        opt = torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, fused=True)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10_000)

        def step():
            torch.nn.utils.clip_grad_norm_(ps, 1.0, foreach=True)
            opt.step()
            sched.step()
        return step

    return [("fusedlr AdamW(max_grad_norm=1.0)", ours),
            ("torch clip_grad_norm_(foreach) + AdamW(fused) + CosineAnnealingLR", theirs)]


def run(sizes, repeats, inner):
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(n, generator=gen) for n in sizes]
    grads = [torch.randn(n, generator=gen) * 10.0 for n in sizes]  # norm >> 1: every step clips
    steps, grad_lists = {}, {}
    for label, make in _variants():
        ps = [p.clone().requires_grad_() for p in init]
        steps[label] = make(ps)
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.clone()
        steps[label]()
        steps[label]()
        grad_lists[label] = [p.grad for p in ps]

    def restore(label):  # torch's clipping rewrites the grads
        for g, saved in zip(grad_lists[label], grads, strict=True):
            g.copy_(saved)

    times = round_robin(steps, repeats, inner, before=restore)
    return [(label, *row) for label, row in summarize(times, next(iter(steps))).items()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 samples (smoke test)")
    ap.add_argument("--out", help="write the markdown table here too")
    args = ap.parse_args(argv)
    lines = [f"Machine: {machine()}", "",
             "| case | variant | ms / step (median) | min-max | time / fusedlr (median) |",
             "|---|---|---:|---:|---:|"]
    for case, sizes in CASES.items():
        if args.quick:
            sizes = sizes[:3] if len(sizes) > 1 else [4097]
        inner = 1 if args.quick else (3 if case == "large" else 20)
        for label, med, lo, hi, ratio in run(sizes, 2 if args.quick else args.repeats, inner):
            lines.append(f"| {case} fp32 | {label} | {med:.3f} | {lo:.3f}-{hi:.3f} | "
                         f"{ratio:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_results(args.out, "Clipping + AdamW + cosine: fusedlr vs torch",
                      "python benchmarks/bench_clip.py --out benchmarks/RESULTS_clip.md", text)


if __name__ == "__main__":
    main()
