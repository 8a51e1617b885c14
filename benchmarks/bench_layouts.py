#!/usr/bin/env python
"""channels_last params: one optimizer step on ResNet-50's parameter shapes, contiguous against
channels_last, in one process.

    python benchmarks/bench_layouts.py [--repeats 15] [--out benchmarks/RESULTS_layouts.md]

Variants per optimizer (fp32, grads in the param's layout, as autograd gives them):
``contiguous`` (every param contiguous), ``channels_last`` (the 4-D conv weights channels_last,
state in their layout: stepped in place as flat memory) and ``channels_last, contiguous state``
(state kept contiguous, as fusedlr allocated it before: every conv weight is stepped through a
contiguous copy and written back). Samples are taken round robin; each times ``inner`` steps;
reported: the median time per step, its spread (min-max over samples), the median of the
per-round ratios to ``contiguous``, and the allocations of one steady-state step (torch's
profiler, profile_memory).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import fusedlr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import machine, round_robin, summarize, write_results  # noqa: E402


def resnet50_shapes() -> list[tuple[int, ...]]:
    """The parameter shapes of torchvision's resnet50 (25.6M parameters, 161 tensors)."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            out = 4 * width
            shapes += [(width, cin, 1, 1), (width,), (width,), (width, width, 3, 3), (width,),
                       (width,), (out, width, 1, 1), (out,), (out,)]
            if b == 0:
                shapes += [(out, cin, 1, 1), (out,), (out,)]
            cin = out
    return shapes + [(1000, 2048), (1000,)]


OPTS = {
    "sgd": lambda ps: fusedlr.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4,
                                  schedule=fusedlr.schedules.CosineAnnealingLR(T_max=1000)),
    "adamw": lambda ps: fusedlr.AdamW(ps, lr=1e-3, weight_decay=0.05,
                                      schedule=fusedlr.schedules.CosineAnnealingLR(T_max=1000)),
}


def _build(kind, layout, shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for s in shapes:
        p = torch.randn(s, generator=gen) * 0.02
        if layout != "contiguous" and p.dim() == 4:
            p = p.contiguous(memory_format=torch.channels_last)
        params.append(p.requires_grad_())
    opt = OPTS[kind](params)
    for p in params:
        p.grad = torch.empty_like(p).normal_(generator=gen)
    opt.step()  # creates the state
    if layout == "channels_last, contiguous state":
        for p in params:
            for k, v in list(opt.state[p].items()):
                if isinstance(v, torch.Tensor) and v.dim() > 0:
                    opt.state[p][k] = v.contiguous()
        opt._relayout()
    return opt


def _allocations(opt) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        opt.step()
    # an allocation: positive self memory of the innermost op, or a "[memory]" event outside ops
    return sum(1 for e in prof.events()
               if e.self_cpu_memory_usage > 0 or (e.name == "[memory]" and e.cpu_memory_usage > 0))


LAYOUTS = ("contiguous", "channels_last", "channels_last, contiguous state")


def run(kind, repeats, inner, shapes):
    opts = {layout: _build(kind, layout, shapes) for layout in LAYOUTS}
    allocs = {layout: _allocations(o) for layout, o in opts.items()}
    times = round_robin({layout: o.step for layout, o in opts.items()}, repeats, inner)
    return [(layout, *row, allocs[layout])
            for layout, row in summarize(times, "contiguous").items()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few small shapes (smoke test)")
    ap.add_argument("--out", help="write the markdown table here too")
    args = ap.parse_args(argv)
    shapes = resnet50_shapes()
    if args.quick:
        shapes = [(8, 3, 7, 7), (8,), (16, 8, 3, 3), (10, 16)]
    n = sum(torch.Size(s).numel() for s in shapes)
    lines = [f"Machine: {machine()}", "",
             f"ResNet-50 parameter shapes: {len(shapes)} tensors, {n / 1e6:.1f}M fp32 params.", "",
             "| optimizer | layout | ms / step (median) | min-max | time / contiguous "
             "(median) | allocations per step |",
             "|---|---|---:|---:|---:|---:|"]
    for kind in OPTS:
        for layout, med, lo, hi, ratio, allocs in run(kind, 2 if args.quick else args.repeats,
                                                       1 if args.quick else args.inner, shapes):
            lines.append(f"| {kind} | {layout} | {med:.2f} | {lo:.2f}-{hi:.2f} | {ratio:.3f}x | "
                         f"{allocs} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_results(args.out,
                      "channels_last params: ResNet-50 shapes, contiguous vs channels_last",
                      "python benchmarks/bench_layouts.py --out benchmarks/RESULTS_layouts.md",
                      text)


if __name__ == "__main__":
    main()
