"""Tuning of the CPU update kernels: the software prefetch distance.

The CPU spans (``csrc/cpu/update_kernels.h``) ask for the cache line ``distance`` elements ahead
of their loop in every array they stream (param, grad and state). 512 elements (2 KiB of an fp32
array) is the default; ``benchmarks/bench_stream.py`` measures other distances against torch's
fused step on the machine at hand. The environment variable ``FUSEDLR_CPU_PREFETCH`` sets the
starting value (checked when fusedlr is imported); ``set_prefetch_distance`` changes it for the
whole process at any time (it applies from the next step).
"""

from __future__ import annotations

import os
import re

import torch  # noqa: F401  (loads the libraries _C links against)

from fusedlr import _C

ENV = "FUSEDLR_CPU_PREFETCH"


def prefetch_distance() -> int:
    """The prefetch distance in elements now in use (0: no software prefetch)."""
    return int(_C.cpu_prefetch_distance())


def set_prefetch_distance(elements: int) -> None:
    """Sets the prefetch distance in elements, 0 (off) to ``_C.cpu_prefetch_limit()``."""
    if isinstance(elements, bool) or not isinstance(elements, int):
        raise TypeError(f"elements must be an int, got {type(elements).__name__}")
    limit = int(_C.cpu_prefetch_limit())
    if not 0 <= elements <= limit:
        raise ValueError(f"elements must be in [0, {limit}], got {elements}")
    _C.set_cpu_prefetch_distance(elements)


def check_env() -> None:
    """Refuses a malformed ``FUSEDLR_CPU_PREFETCH`` (the C++ side would ignore it silently)."""
    raw = os.environ.get(ENV, "")
    if raw == "":
        return
    limit = int(_C.cpu_prefetch_limit())
    value = int(raw) if re.fullmatch(r"[0-9]{1,8}", raw) else -1
    if not 0 <= value <= limit:
        raise ValueError(
            f"{ENV} must be an integer number of elements in [0, {limit}], got {raw!r}")
