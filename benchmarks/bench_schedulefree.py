#!/usr/bin/env python
"""One schedule-free step: fusedlr.SGDScheduleFree / AdamWScheduleFree against the schedulefree
package's optimizers (foreach=True, its default, and foreach=False), side by side in one process.

Full run (the command behind benchmarks/RESULTS_schedulefree.md):

    python benchmarks/bench_schedulefree.py --out benchmarks/RESULTS_schedulefree.md

Smoke run: ``python benchmarks/bench_schedulefree.py --quick``.

Cases: ``large`` (one fp32 tensor of 16M elements) and ``small`` (2000 fp32 tensors of 64
elements). Every variant updates its own copy of the same params with the same grads, with
warmup_steps=100 (so the lr, weights and c_t change every step). The package writes into the
grads (weight decay, AdamW normalisation), so each variant's grads are reset from a saved copy
before every sample, outside the timing. Samples are taken round robin over the variants; a
sample times ``inner`` consecutive steps; reported: the median time per step and, per baseline,
the median of the per-round ratios (baseline / fusedlr).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import fusedlr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import machine, round_robin, summarize, write_results  # noqa: E402


def _variants(kind):
    import schedulefree

    ours = fusedlr.SGDScheduleFree if kind == "sgd" else fusedlr.AdamWScheduleFree
    pkg = getattr(schedulefree, ours.__name__)
    kw = dict(lr=0.1, warmup_steps=100) if kind == "sgd" else dict(lr=2.5e-3, warmup_steps=100,
                                                                    weight_decay=0.01)
    return [
        ("fusedlr", lambda ps: ours(ps, **kw)),
        ("schedulefree foreach", lambda ps: pkg(ps, foreach=True, **kw)),
        ("schedulefree per-tensor", lambda ps: pkg(ps, foreach=False, **kw)),
    ]


def _case(name, quick):
    if name == "large":
        return [2**12 if quick else 2**24]
    return [64] * (50 if quick else 2000)


def run_case(case, kind, repeats, inner, quick):
    sizes = _case(case, quick)
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(n, generator=gen) for n in sizes]
    grads = [torch.randn(n, generator=gen) for n in sizes]
    runs = []
    for label, make in _variants(kind):
        params = [p.clone() for p in init]
        opt = make(params)
        opt.train()
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()  # creates the state
        runs.append((label, opt, params))
    params_of = {label: params for label, _, params in runs}

    def restore(label):  # the package writes into the grads
        for p, g in zip(params_of[label], grads, strict=True):
            p.grad.copy_(g)

    times = round_robin({label: opt.step for label, opt, _ in runs}, repeats, inner,
                        before=restore)
    rows = [(label, med, ratio) for label, (med, _, _, ratio) in
            summarize(times, "fusedlr").items()]
    return sizes, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few samples (smoke test)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", help="write the markdown table here too")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    lines = [f"Machine: {machine()}", "",
             "| case | optimizer | variant | ms / step (median) | time / fusedlr (median) |",
             "|---|---|---|---:|---:|"]
    for case in ("large", "small"):
        inner = 2 if args.quick else (5 if case == "large" else 10)
        for kind in ("sgd", "adamw"):
            sizes, rows = run_case(case, kind, repeats, inner, args.quick)
            desc = f"{case}: {len(sizes)} x {sizes[0]} fp32"
            for label, ms, ratio in rows:
                lines.append(f"| {desc} | {kind} | {label} | {ms:.3f} | {ratio:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_results(args.out, "Schedule-free step: fusedlr vs the schedulefree package",
                      "python benchmarks/bench_schedulefree.py --out "
                      "benchmarks/RESULTS_schedulefree.md", text)


if __name__ == "__main__":
    main()
