"""Shared by the benchmarks: round-robin timing of variants, its summary, the machine line of
a results file, and writing one."""

from __future__ import annotations

import platform
import statistics
import time

import torch

import fusedlr


def machine() -> str:
    """CPU model, threads, torch, Python and fusedlr's CPU ISA: the machine a result is from."""
    cpu = platform.processor() or platform.machine()
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break  # the first processor's block is enough
    except OSError:
        pass
    if "model name" in fields:
        # "Intel(R) Xeon(R) Processor" names no generation; family / model / stepping do
        cpu = fields["model name"]
        if "cpu family" in fields and "model" in fields:
            cpu += (f" (family {fields['cpu family']} model {fields['model']}"
                    f" stepping {fields.get('stepping', '?')})")
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}, fusedlr CPU ISA {fusedlr._C.cpu_isa()}")


def write_results(path: str, title: str, command: str, text: str) -> None:
    """A results file: title, the command that made it (no GPU: CPU results), the table."""
    with open(path, "w") as f:
        f.write(f"# {title}\n\n`{command}` (CPU; no GPU was lent to this run).\n\n{text}\n")


def round_robin(steps: dict, repeats: int, inner: int, before=None) -> dict:
    """{label: [seconds per step, one per sample]}: `repeats` rounds over the variants, each
    sample `inner` back-to-back calls of steps[label]; before(label), if given, runs before each
    sample, outside the timing (e.g. restoring grads a variant rewrites)."""
    times = {label: [] for label in steps}
    for _ in range(repeats):
        for label, step in steps.items():
            if before is not None:
                before(label)
            t0 = time.perf_counter()
            for _ in range(inner):
                step()
            times[label].append((time.perf_counter() - t0) / inner)
    return times


def summarize(times: dict, base: str) -> dict:
    """{label: (median ms, min ms, max ms, median of the per-round ratios to `base`)}."""
    ref = times[base]
    return {label: (statistics.median(ts) * 1e3, min(ts) * 1e3, max(ts) * 1e3,
                    statistics.median(t / b for t, b in zip(ts, ref, strict=True)))
            for label, ts in times.items()}
