#!/usr/bin/env python
"""The machine's streaming memory bandwidth: a 3-stream axpy, ``a += s * b``.

    python benchmarks/bandwidth.py [--mib 256] [--repeats 20]

Two fp32 tensors of ``--mib`` MiB each (far larger than the last-level cache);
``torch.add(a, b, alpha=s, out=a)`` reads a and b and writes a: 12 bytes per element
(no write-allocate traffic, a is already in cache when it is written). It runs on
torch's intra-op threads (all cores by default), as the optimizer kernels do. On CUDA
the same function times with CUDA events.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def axpy_bandwidth(
    n_bytes_per_tensor: int = 256 << 20,
    repeats: int = 20,
    warmup: int = 3,
    device: str | torch.device = "cpu",
) -> dict:
    """Median (and quartiles of) GB/s (1e9 bytes/s) of a += s*b over fp32 tensors."""
    device = torch.device(device)
    n = n_bytes_per_tensor // 4
    a = torch.rand(n, device=device)
    b = torch.rand(n, device=device)
    moved = 12 * n
    s = 1e-7  # keeps a bounded over many repeats
    for _ in range(warmup):
        torch.add(a, b, alpha=s, out=a)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            torch.add(a, b, alpha=s, out=a)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            torch.add(a, b, alpha=s, out=a)
            times.append(time.perf_counter() - t0)
    gbs = sorted(moved / t / 1e9 for t in times)
    q = statistics.quantiles(gbs, n=4) if len(gbs) >= 2 else [gbs[0]] * 3
    return {
        "gbs": statistics.median(gbs),
        "q1": q[0],
        "q3": q[2],
        "bytes_per_tensor": 4 * n,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="size of each tensor in MiB")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    r = axpy_bandwidth(args.mib << 20, args.repeats, device=args.device)
    print(
        f"axpy a += s*b, 2 x {args.mib} MiB fp32, {r['threads']} threads: "
        f"{r['gbs']:.2f} GB/s (IQR {r['q1']:.2f}-{r['q3']:.2f}, {r['repeats']} repeats)"
    )


if __name__ == "__main__":
    main()
