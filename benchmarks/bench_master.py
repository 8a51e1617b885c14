#!/usr/bin/env python
"""master_weights=True: the one-pass step against the three-pass one, in one process.

    python benchmarks/bench_master.py [--repeats 15] [--out benchmarks/RESULTS_master.md]

bfloat16 params with float32 masters, AdamW and SGD (momentum), a cosine schedule. ``one pass``:
the op reads the bf16 grad and the float32 master and state, writes the master, the state and
the rounded bf16 param (28 B a param for AdamW). ``three passes`` (fusedlr before, kept as
``_master_one_pass = False``): the grads are copied to float32 buffers (2 + 4), the float32
update runs (32), the masters are copied to the params (4 + 2): 44 B. Samples are taken round
robin; each times ``inner`` steps; reported: the median time per step, min-max, and the median
of the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import fusedlr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import machine, round_robin, summarize, write_results  # noqa: E402

CASES = {"large": [1 << 24], "400x256": [256] * 400}
OPTS = {
    "adamw": lambda ps: fusedlr.AdamW(ps, lr=1e-3, weight_decay=0.01, master_weights=True,
                                      schedule=fusedlr.schedules.CosineAnnealingLR(T_max=10_000)),
    "sgd": lambda ps: fusedlr.SGD(ps, lr=0.1, momentum=0.9, master_weights=True,
                                  schedule=fusedlr.schedules.CosineAnnealingLR(T_max=10_000)),
}


def run(kind, sizes, repeats, inner):
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(n, generator=gen).bfloat16() for n in sizes]
    grads = [torch.randn(n, generator=gen).bfloat16() for n in sizes]
    steps = {}
    for label, one_pass in (("one pass", True), ("three passes", False)):
        ps = [p.clone() for p in init]
        opt = OPTS[kind](ps)
        opt._master_one_pass = one_pass
        for p, g in zip(ps, grads, strict=True):
            p.grad = g
        opt.step()
        opt.step()
        steps[label] = opt.step
    times = round_robin(steps, repeats, inner)
    return [(label, *row) for label, row in summarize(times, "one pass").items()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 samples (smoke test)")
    ap.add_argument("--out", help="write the markdown table here too")
    args = ap.parse_args(argv)
    lines = [f"Machine: {machine()}", "",
             "| case | optimizer | variant | ms / step (median) | min-max | time / one pass "
             "(median) |",
             "|---|---|---|---:|---:|---:|"]
    for case, sizes in CASES.items():
        if args.quick:
            sizes = [4097] if case == "large" else sizes[:3]
        for kind in OPTS:
            inner = 1 if args.quick else (3 if case == "large" else 20)
            for label, med, lo, hi, ratio in run(kind, sizes, 2 if args.quick else args.repeats,
                                                 inner):
                lines.append(f"| {case} bf16 | {kind} | {label} | {med:.3f} | {lo:.3f}-{hi:.3f} | "
                             f"{ratio:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_results(args.out, "master_weights: one pass vs three passes (bf16 params)",
                      "python benchmarks/bench_master.py --out benchmarks/RESULTS_master.md", text)


if __name__ == "__main__":
    main()
