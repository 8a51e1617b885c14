"""Shared by the benchmarks: the machine line of a results file, and writing one."""

from __future__ import annotations

import platform

import torch

import fusedlr


def machine() -> str:
    """CPU model, threads, torch, Python and fusedlr's CPU ISA: the machine a result is from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}, fusedlr CPU ISA {fusedlr._C.cpu_isa()}")


def write_results(path: str, title: str, command: str, text: str) -> None:
    """A results file: title, the command that made it (no GPU: CPU results), the table."""
    with open(path, "w") as f:
        f.write(f"# {title}\n\n`{command}` (CPU; no GPU was lent to this run).\n\n{text}\n")
