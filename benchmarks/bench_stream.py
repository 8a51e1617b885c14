#!/usr/bin/env python
"""Streaming fp32 steps: fusedlr's CPU prefetch distance swept against torch fused and DeepSpeed.

    python benchmarks/bench_stream.py [--params-m 64] [--threads 1,2] [--repeats 11]
        [--distances 0,128,256,512,1024,2048] [--out benchmarks/RESULTS_stream.md]

Issue 15 item 0: the CPU kernels must stream at the memory limit on every CPU. The kernels ask
for the cache line ``distance`` elements ahead in every array they stream (fusedlr/cpu_tuning.py);
this sweeps that distance (0 = off, the kernels before the change) against the baselines a user
would pick, in one process, variants sampled round robin:

- ``stream``: ``--params-m`` million fp32 params in 16 tensors (1.8 GB of Adam param, grad and
  state at 64M: far past any cache);
- ``resident``: 16 x 4096 fp32 params (1.8 MB for Adam), where the data stays in L2 and the
  prefetch can only cost.

Baselines: torch's fused step + CosineAnnealingLR, and DeepSpeed's CPU Adam + the same scheduler
(Adam / AdamW, when ``deepspeed`` is importable; its op builds itself on first use). fusedlr runs
with CosineAnnealingLR on the device. All variants read the same grads. Reported per thread count
and optimizer: the median ms per step (min-max over the samples), the median over the rounds of
(baseline time / variant time) (above 1: the variant is faster), and GB/s by the bytes-moved
model (SGD-momentum 20 B a param, Adam/AdamW 28: each array read once and written once).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import fusedlr
from fusedlr import _C

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import machine, round_robin, summarize, write_results  # noqa: E402

T_MAX = 10_000
HP = {"sgd": dict(lr=0.1, momentum=0.9), "adam": dict(lr=1e-3),
      "adamw": dict(lr=1e-3, weight_decay=0.01)}
BYTES = {"sgd": 20, "adam": 28, "adamw": 28}
OURS = {"sgd": fusedlr.SGD, "adam": fusedlr.Adam, "adamw": fusedlr.AdamW}
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _with_sched(opt):
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T_MAX)

    def step():
        opt.step()
        sched.step()

    return step


def _deepspeed(kind, params):
    if kind == "sgd":
        return None
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
    except Exception as e:  # noqa: BLE001 - any import failure means: no baseline
        print(f"# deepspeed baseline skipped: {type(e).__name__}: {e}", flush=True)
        return None
    opt = DeepSpeedCPUAdam(params, lr=HP[kind]["lr"], adamw_mode=kind == "adamw",
                           weight_decay=HP[kind].get("weight_decay", 0.0))
    return _with_sched(opt)


def _params(sizes, grads, seed):
    gen = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(n, generator=gen)) for n in sizes]
    for p, g in zip(ps, grads, strict=True):
        p.grad = g
    return ps


def run(kind, sizes, distances, repeats, inner, deepspeed):
    """{label: (median ms, min, max, ratio)} per variant, and the labels of the baselines."""
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(n, generator=gen) * 1e-2 for n in sizes]
    ours = OURS[kind](_params(sizes, grads, 0), **HP[kind],
                      schedule=fusedlr.schedules.CosineAnnealingLR(T_max=T_MAX))
    steps = {f"fusedlr prefetch {d}": ours.step for d in distances}
    steps["torch fused+sched"] = _with_sched(
        TORCH[kind](_params(sizes, grads, 0), **HP[kind], fused=True))
    ds = _deepspeed(kind, _params(sizes, grads, 0)) if deepspeed else None
    if ds is not None:
        steps["deepspeed cpu_adam+sched"] = ds
    base = [k for k in steps if not k.startswith("fusedlr")]

    def before(label):
        if label.startswith("fusedlr prefetch "):
            _C.set_cpu_prefetch_distance(int(label.rsplit(" ", 1)[1]))

    for label, step in steps.items():  # warm-up: state allocated, ops built, pages touched
        before(label)
        for _ in range(2):
            step()
    times = round_robin(steps, repeats, inner, before)
    return {b: summarize(times, b) for b in base}, base


def table(kind, n, results, base):
    head = ["variant", "ms (min-max)", "GB/s"] + [f"vs {b}" for b in base]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    first = results[base[0]]
    for label, (med, lo, hi, _) in first.items():
        gbs = BYTES[kind] * n / (med * 1e-3) / 1e9
        ratios = [f"{1 / results[b][label][3]:.3f}x" for b in base]
        rows.append(f"| {label} | {med:.3g} ({lo:.3g}-{hi:.3g}) | {gbs:.1f} | "
                    + " | ".join(ratios) + " |")
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params-m", type=float, default=64.0)
    ap.add_argument("--threads", default=f"1,{torch.get_num_threads()}")
    ap.add_argument("--distances", default="0,128,256,512,1024,2048")
    ap.add_argument("--opts", default="sgd,adam,adamw")
    ap.add_argument("--cases", default="stream,resident")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--no-deepspeed", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 0.2M params, distances 0 and 512, 1 thread, 2 rounds")
    args = ap.parse_args(argv)
    if args.quick:
        args.params_m, args.distances, args.threads, args.repeats = 0.2, "0,512", "1", 2
        args.no_deepspeed = True
    distances = [int(d) for d in args.distances.split(",")]
    per = int(args.params_m * 1e6 / 16)
    cases = {"stream": ([per] * 16, 1), "resident": ([4096] * 16, 200)}
    default = _C.cpu_prefetch_distance()
    threads = sorted({int(t) for t in args.threads.split(",")})
    parts = []
    try:
        for th in threads:
            torch.set_num_threads(th)
            for case in args.cases.split(","):
                sizes, inner = cases[case]
                n = sum(sizes)
                for kind in args.opts.split(","):
                    results, base = run(kind, sizes, distances, args.repeats, inner,
                                        not args.no_deepspeed)
                    text = (f"### {case}, {kind}, {n / 1e6:.3g}M params, {th} thread(s)\n\n"
                            + table(kind, n, results, base))
                    print(text + "\n", flush=True)
                    parts.append(text)
    finally:
        _C.set_cpu_prefetch_distance(default)
    torch.set_num_threads(max(threads))
    text = (f"Machine: {machine()}; default prefetch distance {default} elements.\n\n"
            + "\n\n".join(parts))
    if args.out:
        env = "".join(f"{k}={os.environ[k]} " for k in ("FUSEDLR_CPU_ISA", "FUSEDLR_CPU_PREFETCH")
                      if os.environ.get(k))
        write_results(args.out, "fusedlr CPU prefetch distance: streaming and resident steps",
                      env + "python benchmarks/" + os.path.basename(__file__) + " "
                      + " ".join(argv if argv is not None else sys.argv[1:]), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
