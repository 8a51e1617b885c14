"""A small fusedlr workload for compute-sanitizer (tools/gpu_check.sh runs it under memcheck):
every update kernel in every dtype, aligned / misaligned / mixed pointers, odd tails, a tensor
continuing across a 320-block launch, more than 36 / 48 / 256 tensors (several update and
step-increment launches), the grad scaler and an overflow-skipped step, an empty tensor.

    compute-sanitizer --tool memcheck --error-exitcode 9 python tools/gpu_small_step.py
    python tools/gpu_small_step.py --device cpu     # dry run of the script itself
"""

from __future__ import annotations

import argparse
import math

import torch

import fusedlr
from fusedlr import schedules as S  # noqa: N812

CHUNK = 65536
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def place(n, dtype, offset, seed, device):
    x = torch.arange(n, dtype=torch.float64).mul_(0.6180339887).add_(seed * 0.37).frac_()
    storage = torch.empty(n + offset, device=device, dtype=dtype)
    return storage[offset:].copy_(x.sub_(0.5))


def specs(big: int):
    out = [
        (n, dt, off)
        for dt in DTYPES
        for n in (1, 3, 7, 4097, CHUNK + 1, 2 * CHUNK + 5)
        for off in (0, 1)
    ]
    out += [(1 + (i * 37) % 500, torch.float32, i % 2) for i in range(300)]  # > 256 steps
    out += [(big, torch.float32, 1), (0, torch.float32, 0)]  # launch boundary, empty
    return out


def make(kind, ps):
    half = len(ps) // 2
    if kind == "sgd":
        return fusedlr.SGD(
            [
                dict(params=ps[:half], momentum=0.9, nesterov=True),
                dict(params=ps[half:], momentum=0.0, weight_decay=0.1),
            ],
            lr=0.01,
            schedule=S.CosineAnnealingLR(T_max=10),
        )
    cls = fusedlr.AdamW if kind == "adamw" else fusedlr.Adam
    return cls(
        [dict(params=ps[:half], amsgrad=True), dict(params=ps[half:])],
        lr=1e-3,
        weight_decay=0.01,
        schedule=S.CosineAnnealingLR(T_max=10),
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    dev = torch.device(args.device)
    big = (320 if dev.type == "cuda" else 3) * CHUNK + 3
    sp = specs(big)
    for kind in ("sgd", "adam", "adamw"):
        ps = [place(n, dt, off, i, dev) for i, (n, dt, off) in enumerate(sp)]
        for i, p in enumerate(ps):
            p.grad = place(p.numel(), p.dtype, int(i % 3 == 0), 1000 + i, dev)
        opt = make(kind, ps)
        opt.step()  # the general path (creates state)
        opt.grad_scale = torch.full((1,), 64.0, device=dev)
        opt.found_inf = torch.zeros(1, device=dev)
        opt.step()  # the C++ eager path, grad scaler
        before = [p.clone() for p in ps]
        opt.found_inf.fill_(1.0)
        opt.step()  # overflow: skipped
        del opt.grad_scale, opt.found_inf
        skipped = all(torch.equal(a, b) for a, b in zip(before, ps, strict=True))
        finite = all(bool(torch.isfinite(p).all()) for p in ps)
        lr = float(opt.get_last_lr()[0])
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ok = skipped and finite and math.isfinite(lr)
        print(
            f"{kind}: {len(ps)} tensors, overflow step skipped {skipped}, finite {finite}, "
            f"lr {lr:.4g}: {'ok' if ok else 'WRONG'}",
            flush=True,
        )
        if not ok:
            return 1
    print("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
