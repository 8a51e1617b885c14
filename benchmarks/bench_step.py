#!/usr/bin/env python
"""One optimizer step: fusedlr against torch.optim + lr_scheduler, side by side in one process.

Full run (the command behind benchmarks/RESULTS.md; about 3 minutes on a quiet 2-core machine,
far longer on a loaded one: torch's per-tensor parallel regions stall when cores are shared):

    python benchmarks/bench_step.py --breakdown

Smoke run (tiny sizes, a few iterations; tests/test_bench_smoke.py runs this):

    python benchmarks/bench_step.py --quick

Subsets: ``--cases large16m,small2000x64 --opts adam --repeats 50``; ``--list`` names the cases.

What is timed, per case and optimizer (SGD momentum=0.9, Adam, AdamW weight_decay=1e-2):
  * fusedlr:             ``opt.step()`` with ``schedule=CosineAnnealingLR(T_max)`` on the device;
  * torch foreach+sched: ``torch.optim.X(foreach=True)``, ``opt.step(); sched.step()`` with
                         ``torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max)``;
  * torch fused+sched:   the same with ``fused=True``;
  * deepspeed cpu_adam+sched (``--baselines ...,deepspeed``, optional): DeepSpeedCPUAdam (fp32
                         Adam / AdamW on the CPU; its op builds itself on first use).
All variants update the same parameter tensors with the same (fixed) grads, each with its own
optimizer state. Each variant is warmed up, then sampled ``--repeats`` times, round robin over
the variants (so drift in machine load hits all of them alike); a sample times ``inner``
consecutive steps (``inner`` chosen so a sample lasts >= ``--sample-ms``) and yields the time
per step. Reported: median and interquartile range (IQR) of the samples, and the speedup over
each baseline as the median (and IQR) of per-round ratios (baseline sample / fusedlr sample of
the same round: paired, so slow drift in machine load cancels). ``--baselines fused`` keeps only
torch fused=True (a two-variant A/B, e.g. with ``--repeats 40`` for the large cases).

Bytes moved per parameter (the model behind "GB/s"; each array is read once and written once):
  fp32 Adam/AdamW: read p, g, m, v + write p, m, v = 7 x 4 = 28 B; fp32 SGD momentum: read p, g,
  buf + write p, buf = 5 x 4 = 20 B. bf16 params (fusedlr keeps fp32 state): Adam 2+2+2+8+8 = 22 B,
  SGD 2+2+2+8 = 14 B; torch keeps bf16 state for bf16 params: Adam 14 B, SGD 10 B. The machine's
  streaming bandwidth is a 3-stream axpy (benchmarks/bandwidth.py), measured before and after the
  cases; the higher median is the reference (interference only lowers it).

Memory: allocations during steady-state steps are counted with
``torch.profiler.profile(profile_memory=True)``: every allocation through a c10 allocator
(all tensor storage: CPU and CUDA) is a "[memory]" event with a positive byte count; host-side
``malloc`` inside an op (std::vector) is not a tensor allocation and is not seen. On CUDA the
caching allocator's ``memory_stats()`` counts are used too. Optimizer state bytes per parameter
sum the tensors in ``opt.state``.

On CUDA (``torch.cuda.is_available()``) the same script times with CUDA events and adds
CUDA-graph replays: fusedlr's whole ``step()`` captured once and replayed (the lr changes inside
the graph), and torch's ``fused=True, capturable=True`` step captured with a tensor lr that the
eager ``sched.step()`` updates between replays.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bandwidth import axpy_bandwidth  # noqa: E402

import fusedlr  # noqa: E402
from fusedlr import schedules as S  # noqa: E402, N812

T_MAX = 1_000_000  # cosine horizon: long enough that every step's lr is distinct and nonzero
HPARAMS = {
    "sgd": dict(lr=1e-2, momentum=0.9),
    "adam": dict(lr=1e-3),
    "adamw": dict(lr=1e-3, weight_decay=1e-2),
}
FUSED_CLS = {"sgd": fusedlr.SGD, "adam": fusedlr.Adam, "adamw": fusedlr.AdamW}
TORCH_CLS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
OPT_LABEL = {"sgd": "SGD-mom", "adam": "Adam", "adamw": "AdamW"}


# -- parameter shapes -------------------------------------------------------------------------


def transformer_block(d: int) -> list[tuple]:
    """Shapes of one pre-norm transformer block (fused qkv, 4x MLP)."""
    norm = [(d,), (d,)]
    qkv, out = [(3 * d, d), (3 * d,)], [(d, d), (d,)]
    mlp_in, mlp_out = [(4 * d, d), (4 * d,)], [(d, 4 * d), (d,)]
    return norm + qkv + out + norm + mlp_in + mlp_out


def lm_shapes(d: int, vocab: int, blocks: int) -> list[tuple]:
    """A decoder's layer shapes: token embedding, `blocks` blocks, final norm."""
    shapes = [(vocab, d)]
    for _ in range(blocks):
        shapes += transformer_block(d)
    return shapes + [(d,), (d,)]


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )


def resnet18(width: int = 64, classes: int = 1000) -> nn.Module:
    """torchvision's resnet18 layer for layer (parameters only; no forward needed here)."""
    m = nn.Module()
    m.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    cin = width
    for i, mult in enumerate((1, 2, 4, 8)):
        cout = width * mult
        stride = 1 if i == 0 else 2
        setattr(
            m,
            f"layer{i + 1}",
            nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)),
        )
        cin = cout
    m.fc = nn.Linear(cin, classes)
    return m


def small_transformer(d: int = 512, layers: int = 6, vocab: int = 8192) -> nn.Module:
    """nn.TransformerEncoder (post-norm, d_model=d, 8 heads, ffn 4d) plus an embedding."""
    m = nn.Module()
    m.embed = nn.Embedding(vocab, d)
    layer = nn.TransformerEncoderLayer(d, 8, 4 * d, batch_first=True)
    m.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    m.head = nn.Linear(d, vocab)
    return m


def model_shapes(model: nn.Module) -> list[tuple]:
    return [tuple(p.shape) for p in model.parameters()]


@dataclass
class Case:
    name: str
    kind: str  # "large", "small", "model"
    dtype: torch.dtype
    shapes: list[tuple]
    note: str

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def build_cases(quick: bool) -> dict[str, Case]:
    """The benchmark cases; --quick keeps every case's structure at tiny sizes."""
    if quick:
        l16, l64 = lm_shapes(64, 256, 1), lm_shapes(64, 512, 2)
        s400, s2000 = [(256,)] * 40, [(64,)] * 200
        rn, tf = (
            model_shapes(resnet18(width=4, classes=10)),
            model_shapes(small_transformer(32, 2, 64)),
        )
    else:
        # 16.8M: d=1024 decoder with 1 block and a 4096-token embedding;
        # 64.3M: 4 blocks and a 13568-token embedding.
        l16, l64 = lm_shapes(1024, 4096, 1), lm_shapes(1024, 13568, 4)
        s400, s2000 = [(256,)] * 400, [(64,)] * 2000
        rn, tf = model_shapes(resnet18()), model_shapes(small_transformer())
    f32, b16 = torch.float32, torch.bfloat16
    cases = [
        Case("large16m", "large", f32, l16, "d=1024 decoder, 1 block + 4096x1024 embedding"),
        Case("large64m", "large", f32, l64, "d=1024 decoder, 4 blocks + 13568x1024 embedding"),
        Case("large16m_bf16", "large", b16, l16, "large16m in bf16"),
        Case("large64m_bf16", "large", b16, l64, "large64m in bf16"),
        Case("small400x256", "small", f32, s400, "400 tensors of 256 elements"),
        Case("small2000x64", "small", f32, s2000, "2000 tensors of 64 elements"),
        Case("resnet18", "model", f32, rn, "torchvision resnet18 shapes (conv/bn/fc)"),
        Case("transformer", "model", f32, tf, "nn.TransformerEncoder d=512 x6 + emb/head 8192"),
    ]
    return {c.name: c for c in cases}


# -- variants ---------------------------------------------------------------------------------


def bytes_per_param(opt: str, dtype: torch.dtype, state_dtype: torch.dtype) -> int:
    """The bytes-moved model (module docstring): each array read once, written once."""
    p, s = torch.finfo(dtype).bits // 8, torch.finfo(state_dtype).bits // 8
    if opt == "sgd":
        return 3 * p + 2 * s  # p r/w, g r, buf r/w
    return 3 * p + 4 * s  # p r/w, g r, m r/w, v r/w


@dataclass
class Variant:
    name: str
    opt: torch.optim.Optimizer
    step: object  # () -> None
    state_dtype: torch.dtype
    samples: list[float] = field(default_factory=list)
    inner: int = 1
    extra: dict = field(default_factory=dict)


def make_variants(
    opt_name: str, params: list, device: torch.device, baselines=("foreach", "fused")
) -> list[Variant]:
    hp = HPARAMS[opt_name]
    dtype = params[0].dtype
    low = dtype in (torch.bfloat16, torch.float16)
    out = []

    fo = FUSED_CLS[opt_name](params, **hp, schedule=S.CosineAnnealingLR(T_MAX))
    out.append(Variant("fusedlr", fo, fo.step, torch.float32 if low else dtype))

    for flag in baselines:
        if flag == "deepspeed":
            ds = deepspeed_variant(opt_name, params, device, hp)
            out += [ds] if ds is not None else []
            continue
        to = TORCH_CLS[opt_name](params, **hp, **{flag: True})
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(to, T_max=T_MAX)

        def step(to=to, sched=sched):
            to.step()
            sched.step()

        out.append(Variant(f"torch {flag}+sched", to, step, dtype))

    if device.type == "cuda":
        out += cuda_graph_variants(opt_name, params, hp)
    return out


def deepspeed_variant(opt_name: str, params: list, device: torch.device, hp: dict):
    """DeepSpeed's CPU Adam (``DeepSpeedCPUAdam``, its op JIT-built on first use, about 5
    minutes) + CosineAnnealingLR, for fp32 Adam / AdamW on the CPU; None where it does not apply
    or DeepSpeed is not installed (an optional baseline: ``pip install deepspeed``)."""
    if opt_name == "sgd" or device.type != "cpu" or params[0].dtype != torch.float32:
        return None
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
    except Exception as e:  # noqa: BLE001 - any import failure means: no baseline
        print(f"# deepspeed baseline skipped: {type(e).__name__}: {e}")
        return None
    to = DeepSpeedCPUAdam(params, lr=hp["lr"], weight_decay=hp.get("weight_decay", 0.0),
                          adamw_mode=opt_name == "adamw")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(to, T_max=T_MAX)

    def step():
        to.step()
        sched.step()

    return Variant("deepspeed cpu_adam+sched", to, step, torch.float32)


def cuda_graph_variants(opt_name: str, params: list, hp: dict) -> list[Variant]:
    """CUDA only: whole-step graph replays (fusedlr; torch fused+capturable with a tensor lr)."""
    out = []
    dtype = params[0].dtype
    low = dtype in (torch.bfloat16, torch.float16)

    def capture(step):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # creates the state; torch.cuda.graph wants warm-up off-stream
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph

    fo = FUSED_CLS[opt_name](params, **hp, schedule=S.CosineAnnealingLR(T_MAX))
    g = capture(fo.step)
    out.append(Variant("fusedlr graph", fo, g.replay, torch.float32 if low else dtype))

    try:
        lr = torch.tensor(hp["lr"], device=params[0].device)
        kw = dict(hp, lr=lr, fused=True)
        if opt_name != "sgd":
            kw["capturable"] = True
        to = TORCH_CLS[opt_name](params, **kw)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(to, T_max=T_MAX)
        tg = capture(to.step)

        def step(tg=tg, sched=sched):
            tg.replay()
            sched.step()  # writes the tensor lr in place (fill_), which the graph reads

        out.append(Variant("torch fused graph+sched", to, step, dtype))
    except Exception as e:  # noqa: BLE001  (a torch version without capturable fused SGD)
        print(f"# torch fused graph ({opt_name}): not capturable here: {e}", file=sys.stderr)
    return out


# -- timing -----------------------------------------------------------------------------------


class Timer:
    """Seconds per call of fn, averaged over `inner` back-to-back calls."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sample(self, fn, inner: int) -> float:
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / inner
        t0 = time.perf_counter_ns()
        for _ in range(inner):
            fn()
        return (time.perf_counter_ns() - t0) / 1e9 / inner


def warm_and_calibrate(timer: Timer, fn, warmup: int, warmup_s: float, sample_s: float) -> int:
    """Runs >= warmup steps (and up to warmup_s); returns the inner count for one sample."""
    t0 = time.perf_counter()
    k = 0
    while k < warmup or (time.perf_counter() - t0 < warmup_s and k < 20 * warmup):
        fn()
        k += 1
    one = min(timer.sample(fn, 1) for _ in range(3))
    return max(1, min(100_000, math.ceil(sample_s / max(one, 1e-9))))


def run_round_robin(timer: Timer, variants: list[Variant], repeats: int) -> None:
    for r in range(repeats):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            v.samples.append(timer.sample(v.step, v.inner))


def summary(samples: list[float]) -> tuple[float, float, float]:
    """(median, q1, q3)."""
    med = statistics.median(samples)
    if len(samples) < 2:
        return med, med, med
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return med, q[0], q[2]


# -- memory -----------------------------------------------------------------------------------


def steady_allocations(step, device: torch.device, steps: int = 2) -> tuple[float, float]:
    """(allocations, bytes allocated) per step, over `steps` steady-state steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_stats(device)
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        after = torch.cuda.memory_stats(device)
        n = after["allocation.all.allocated"] - before["allocation.all.allocated"]
        b = after["allocated_bytes.all.allocated"] - before["allocated_bytes.all.allocated"]
        return n / steps, b / steps
    acts = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=acts, profile_memory=True) as prof:
        for _ in range(steps):
            step()
    allocs = [
        e.nbytes()
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.nbytes() > 0
    ]
    return len(allocs) / steps, sum(allocs) / steps


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in opt.state (per-param state, step counters included)."""
    seen, total = set(), 0
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor) and id(v) not in seen:
                seen.add(id(v))
                total += v.numel() * v.element_size()
    return total


# -- fusedlr step breakdown (diagnostics; uses fusedlr internals, skipped if they change) --------


def fusedlr_breakdown(
    timer: Timer, v: Variant, opt_name: str, params: list, sample_s: float, repeats: int
) -> dict | None:
    """Times the pieces of fusedlr's eager step(): Python glue, schedule op, the C++ bucket
    step (grads read in C++, update op through the C++ dispatcher), and for comparison the
    same update through ``torch.ops`` with Python lists (the torch.compile / fallback path)
    and a step over one flat tensor of the same element count (the kernel without
    per-tensor costs)."""
    from fusedlr import ops

    opt = v.opt
    try:
        (bucket,) = opt._buckets
        (ds,) = opt._devices.values()
        call = bucket.calls[None]
        native = opt._native(call)
        grads = [p.grad for p in bucket.params]
    except (AttributeError, KeyError, ValueError) as e:
        return {"error": f"internals changed: {e!r}"}
    if native is None:
        return {"error": "no C++ eager step for this bucket"}

    def native_update():
        native.gather()
        native.run(ds.hparams, ds.group_lr, None, None)

    def sched():
        ops.eval_schedule_(ds.program, ds.hparams, ds.lr_scale, ds.counter, ds.group_lr)

    if opt_name == "sgd":

        def update():
            ops.sgd_update_(
                call.params,
                grads,
                call.lists[0],
                call.steps,
                call.meta,
                ds.hparams,
                ds.group_lr,
                None,
                None,
            )
    else:

        def update():
            ops.adam_update_(
                call.params,
                grads,
                call.lists[0],
                call.lists[1],
                call.lists[2],
                call.steps,
                call.meta,
                ds.hparams,
                ds.group_lr,
                None,
                None,
            )

    flat = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype)
    flat.grad = torch.randn_like(flat) * 1e-3
    fo = FUSED_CLS[opt_name]([flat], **HPARAMS[opt_name], schedule=S.CosineAnnealingLR(T_MAX))
    fo.step()

    pieces = {
        "step": opt.step,
        "sync_groups": opt._sync_groups,
        "eval_schedule_": sched,
        "C++ bucket step": native_update,
        "torch.ops update": update,
        "flat step (1 tensor)": fo.step,
    }
    inner = {k: warm_and_calibrate(timer, f, 3, 0.05, sample_s) for k, f in pieces.items()}
    samples = {k: [] for k in pieces}
    for _ in range(max(5, repeats // 2)):
        for k, f in pieces.items():
            samples[k].append(timer.sample(f, inner[k]))
    out = {k: statistics.median(s) for k, s in samples.items()}
    out["python rest"] = (
        out["step"] - out["sync_groups"] - out["eval_schedule_"] - out["C++ bucket step"]
    )
    del fo, flat
    return out


def bf16_vs_fp32(case32: Case, opt_names: list[str], args, timer: Timer, device) -> list:
    """fusedlr on the same shapes in fp32 and in bf16, sampled in one round robin (the
    per-case tables are minutes apart; machine noise would swamp a cross-case ratio)."""
    rows = []
    gen = torch.Generator().manual_seed(1)
    sets = {}
    for dt in (torch.float32, torch.bfloat16):
        ps = []
        for s in case32.shapes:
            p = nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(device, dt))
            p.grad = (torch.randn(s, generator=gen) * 1e-3).to(device, dt)
            ps.append(p)
        sets[dt] = ps
    for opt_name in opt_names:
        variants = []
        for dt, ps in sets.items():
            o = FUSED_CLS[opt_name](ps, **HPARAMS[opt_name], schedule=S.CosineAnnealingLR(T_MAX))
            variants.append(Variant(str(dt).split(".")[-1], o, o.step, torch.float32))
        for v in variants:
            v.inner = warm_and_calibrate(
                timer, v.step, args.warmup, args.warmup_s, args.sample_ms / 1e3
            )
        run_round_robin(timer, variants, args.repeats)
        t32, t16 = (summary(v.samples)[0] / case32.numel for v in variants)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        rows.append(
            [
                f"{case32.numel / 1e6:.3g}M",
                OPT_LABEL[opt_name],
                f"{t32 * 1e9:.3g}",
                f"{t16 * 1e9:.3g}",
                f"{t16 / t32:.2f}",
                f"{load:.2f}",
            ]
        )
        del variants
        gc.collect()
    del sets
    gc.collect()
    return rows


# -- formatting -------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_time(samples: list[float]) -> str:
    med, q1, q3 = summary(samples)
    return f"{fmt_ms(med)} ({fmt_ms(q1)}–{fmt_ms(q3)})"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_lines(device: torch.device) -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        from fusedlr.info import info

        isa = info().get("CPU vector ISA", "?")
    except Exception as e:  # noqa: BLE001  (report, don't fail, on an info() change)
        isa = f"? ({e!r})"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
        f"- torch {torch.__version__}, fusedlr {getattr(fusedlr, '__version__', '?')}, "
        f"fusedlr CPU ISA {isa}, Python {platform.python_version()}",
        f"- device: {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        f"- load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]
    return lines


# -- main -------------------------------------------------------------------------------------


def run_case(case: Case, opt_names: list[str], args, timer: Timer, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    params, grads = [], []
    for s in case.shapes:
        p = nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(device, case.dtype))
        p.grad = (torch.randn(s, generator=gen) * 1e-3).to(device, case.dtype)
        params.append(p)
        grads.append(p.grad)
    results = []
    for opt_name in opt_names:
        variants = make_variants(opt_name, params, device, args.baselines)
        for v in variants:
            v.inner = warm_and_calibrate(
                timer, v.step, args.warmup, args.warmup_s, args.sample_ms / 1e3
            )
        run_round_robin(timer, variants, args.repeats)
        if not args.no_memory:
            for v in variants:
                v.extra["allocs"] = steady_allocations(v.step, device)
                v.extra["state"] = state_bytes(v.opt)
        bd = None
        if args.breakdown and device.type == "cpu":
            bd = fusedlr_breakdown(
                timer, variants[0], opt_name, params, args.sample_ms / 1e3, args.repeats
            )
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        results.append((opt_name, variants, bd, load))
        line = "  ".join(f"{v.name}={fmt_time(v.samples)}" for v in variants)
        print(
            f"# {case.name} {opt_name}: {line}  (ms; load {load:.2f})",
            file=sys.stderr,
            flush=True,
        )
        for v in variants:  # drop references to the state before the next optimizer
            v.opt = None
            v.step = None
        del variants
        gc.collect()
    del params, grads
    gc.collect()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fusedlr step() vs torch.optim + lr_scheduler")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few iterations")
    ap.add_argument("--cases", default="all", help="comma-separated case names (see --list)")
    ap.add_argument("--opts", default="sgd,adam,adamw", help="comma-separated: sgd,adam,adamw")
    ap.add_argument(
        "--baselines", default="foreach,fused",
        help="baselines: foreach,fused (torch) and optionally deepspeed"
    )
    ap.add_argument("--repeats", type=int, default=None, help="samples per variant (default 15)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps per variant")
    ap.add_argument("--warmup-s", type=float, default=None, help="warm-up seconds per variant")
    ap.add_argument("--sample-ms", type=float, default=None, help="min duration of one sample")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument(
        "--breakdown", action="store_true", help="time the pieces of fusedlr's step (CPU)"
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the allocation/state tables")
    ap.add_argument("--bw-mib", type=int, default=None, help="axpy tensor size in MiB")
    ap.add_argument("--json", default=None, help="write raw samples and results here")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)

    q = args.quick
    args.repeats = args.repeats or (3 if q else 15)
    args.warmup = args.warmup or (1 if q else 5)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (0.0 if q else 0.5)
    args.sample_ms = args.sample_ms if args.sample_ms is not None else (1.0 if q else 20.0)
    args.bw_mib = args.bw_mib or (8 if q else 256)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    all_cases = build_cases(q)
    if args.list:
        for c in all_cases.values():
            print(f"{c.name:15s} {c.numel:>11,d} params {len(c.shapes):5d} tensors  {c.note}")
        return 0
    names = list(all_cases) if args.cases == "all" else args.cases.split(",")
    unknown = [n for n in names if n not in all_cases]
    opt_names = args.opts.split(",")
    args.baselines = tuple(args.baselines.split(","))
    if any(b not in ("foreach", "fused", "deepspeed") for b in args.baselines):
        ap.error(f"--baselines: foreach, fused and/or deepspeed, got {args.baselines}")
    if unknown or any(o not in HPARAMS for o in opt_names):
        ap.error(f"unknown case/opt: {unknown or opt_names}; cases: {', '.join(all_cases)}")

    # torch.optim imports torch._dynamo on first use: do that now, then move every object alive
    # so far out of the collector's reach, so the gc.collect() between cases stays fast.
    torch.optim.SGD([nn.Parameter(torch.zeros(1))])
    gc.collect()
    gc.freeze()
    timer = Timer(device)
    print("# fusedlr step benchmark\n")
    print("\n".join(machine_lines(device)))
    print(f"- command: python benchmarks/bench_step.py {' '.join(argv or sys.argv[1:])}".rstrip())
    bw = axpy_bandwidth(args.bw_mib << 20, repeats=5 if q else 20, device=device)
    print(
        f"- streaming bandwidth (axpy a += s*b, 2 x {args.bw_mib} MiB fp32, "
        f"{bw['threads']} threads): {bw['gbs']:.2f} GB/s (IQR {bw['q1']:.2f}–{bw['q3']:.2f})"
    )
    print(
        f"- {args.repeats} samples per variant, each >= {args.sample_ms:g} ms of back-to-back "
        f"steps; times in ms per step, median (IQR)\n"
    )

    all_results = []
    for name in names:
        case = all_cases[name]
        print(f"# case {name}: {case.numel:,} params, {len(case.shapes)} tensors", file=sys.stderr)
        all_results.append((case, run_case(case, opt_names, args, timer, device)))
    pair_rows = []
    for name in names:
        if name + "_bf16" in names:
            print(f"# bf16 vs fp32: {name}", file=sys.stderr)
            pair_rows += bf16_vs_fp32(all_cases[name], opt_names, args, timer, device)
    bw_after = axpy_bandwidth(args.bw_mib << 20, repeats=5 if q else 20, device=device)

    report(all_results, bw, bw_after, args, device, pair_rows)
    return 0


def report(all_results, bw, bw_after, args, device, pair_rows=()) -> None:
    # Interference from other processes can only lower a bandwidth figure: the reference is the
    # higher of the medians measured before and after the cases.
    gbs_ref = max(bw["gbs"], bw_after["gbs"])
    names = None
    rows, bw_rows, small_rows, mem_rows, bd_rows = [], [], [], [], []
    for case, results in all_results:
        for opt_name, variants, bd, load in results:
            names = names or [v.name for v in variants]
            med = {v.name: summary(v.samples)[0] for v in variants}
            f = med["fusedlr"]
            row = [case.name, OPT_LABEL[opt_name], f"{case.numel / 1e6:.3g}M", len(case.shapes)]
            row += [fmt_time(v.samples) for v in variants]
            for v in variants[1:]:
                # Paired: each round samples every variant back to back, so the per-round ratio
                # cancels drift in machine load that the ratio of medians would carry.
                ratios = [b / a for a, b in zip(variants[0].samples, v.samples, strict=True)]
                r, q1, q3 = summary(ratios)
                row.append(f"{r:.2f}x ({q1:.2f}–{q3:.2f})")
            row.append(f"{load:.2f}")
            rows.append(row)
            if case.kind == "large":
                brow = [case.name, OPT_LABEL[opt_name]]
                for v in variants:
                    if v.name.startswith("torch foreach"):
                        continue
                    b = bytes_per_param(opt_name, case.dtype, v.state_dtype)
                    gbs = b * case.numel / med[v.name] / 1e9
                    brow += [f"{b}", f"{gbs:.2f}", f"{100 * gbs / gbs_ref:.0f}%"]
                brow.append(f"{f / case.numel * 1e9:.3g}")
                bw_rows.append(brow)
            if case.kind == "small":
                n = len(case.shapes)
                small_rows.append(
                    [case.name, OPT_LABEL[opt_name]]
                    + [f"{med[v.name] / n * 1e6:.3g}" for v in variants]
                )
            if variants[0].extra:
                mrow = [case.name, OPT_LABEL[opt_name]]
                for v in variants:
                    na, nb = v.extra["allocs"]
                    mrow.append(
                        f"{na:g} ({nb / 1e6:.3g} MB)" if nb >= 1e5 else f"{na:g} ({nb:g} B)"
                    )
                for v in variants:
                    mrow.append(f"{v.extra['state'] / case.numel:.3f}")
                mem_rows.append(mrow)
            if bd:
                if "error" in bd:
                    bd_rows.append([case.name, OPT_LABEL[opt_name], bd["error"]] + [""] * 6)
                else:
                    keys = [
                        "step",
                        "sync_groups",
                        "eval_schedule_",
                        "C++ bucket step",
                        "python rest",
                        "torch.ops update",
                        "flat step (1 tensor)",
                    ]
                    bd_rows.append(
                        [case.name, OPT_LABEL[opt_name]] + [f"{bd[k] * 1e6:.4g}" for k in keys]
                    )

    print(
        "## Step time (ms per step, median (IQR)); speedup = median over rounds of (baseline "
        "sample / fusedlr sample of the same round), with its IQR; "
        "load avg = 1-minute load average when the row finished\n"
    )
    header = ["case", "optimizer", "params", "tensors"] + names
    header += [f"speedup vs {n} (IQR)" for n in names if n != "fusedlr"]
    header.append("load avg")
    print(table(header, rows))
    if bw_rows:
        print(
            f"\n## Large cases: effective bandwidth from the bytes-moved model "
            f"(axpy = {gbs_ref:.2f} GB/s, the higher of the before/after medians)\n"
        )
        h = ["case", "optimizer"]
        for n in names:
            if not n.startswith("torch foreach"):
                h += [f"{n} B/param", f"{n} GB/s", f"{n} % of axpy"]
        h.append("fusedlr ns/param")
        print(table(h, bw_rows))
    if pair_rows:
        print(
            "\n## bf16 vs fp32, fusedlr, ns per parameter, both sampled in one round robin "
            "(target: bf16/fp32 <= 1)\n"
        )
        h = ["params", "optimizer", "fp32 ns/param", "bf16 ns/param", "bf16/fp32", "load avg"]
        print(table(h, pair_rows))
    if small_rows:
        print("\n## Many small tensors: µs per tensor per step\n")
        print(table(["case", "optimizer"] + names, small_rows))
    if mem_rows:
        print(
            "\n## Memory: tensor allocations per steady-state step (count (bytes)), "
            "optimizer state bytes per parameter\n"
        )
        h = ["case", "optimizer"] + [f"{n} allocs/step" for n in names]
        h += [f"{n} state B/param" for n in names]
        print(table(h, mem_rows))
    if bd_rows:
        print("\n## fusedlr step() pieces (µs per step, medians; python rest = step - pieces)\n")
        print(
            table(
                [
                    "case",
                    "optimizer",
                    "step",
                    "_sync_groups",
                    "eval_schedule_ op",
                    "C++ bucket step (grads + update op)",
                    "python rest",
                    "same update via torch.ops lists",
                    "flat 1-tensor step",
                ],
                bd_rows,
            )
        )
    print(
        f"\nstreaming bandwidth after the run: {bw_after['gbs']:.2f} GB/s; "
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )

    if args.json:
        raw = {
            "bandwidth": bw,
            "bandwidth_after": bw_after,
            "device": str(device),
            "torch": torch.__version__,
            "results": [
                {
                    "case": case.name,
                    "numel": case.numel,
                    "tensors": len(case.shapes),
                    "dtype": str(case.dtype),
                    "opt": opt_name,
                    "variants": {
                        v.name: {
                            "samples": v.samples,
                            "inner": v.inner,
                            "allocs": v.extra.get("allocs"),
                            "state_bytes": v.extra.get("state"),
                        }
                        for v in variants
                    },
                    "breakdown": bd,
                    "load": load,
                }
                for case, results in all_results
                for opt_name, variants, bd, load in results
            ],
        }
        with open(args.json, "w") as fh:
            json.dump(raw, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
