"""Tuning of the CPU update kernels: the software prefetch distance.

The CPU spans (``csrc/cpu/update_kernels.h``, ``csrc/cpu/prefetch.h``) ask for the cache line
``distance`` elements ahead of their loop in every array they stream (param, grad and state).
512 elements (2 KiB of an fp32 array) is the default; ``benchmarks/bench_stream.py`` measures
other distances against torch's fused step on the machine at hand. 0 turns it off; the largest
distance is 8192, half of the 16384-element work items the kernels split tensors into (a span
no longer than the distance prefetches nothing, so a tensor of at most ``distance`` elements is
never prefetched). The environment variable ``FUSEDLR_CPU_PREFETCH`` (1-8 decimal digits) sets
the starting value, checked and fixed when fusedlr is imported; ``set_prefetch_distance``
changes it for the whole process at any time (it applies from the next step).
"""

from __future__ import annotations

import operator
import os
import re

import torch  # noqa: F401  (loads the libraries _C links against)

from fusedlr import _C

ENV = "FUSEDLR_CPU_PREFETCH"


def prefetch_distance() -> int:
    """The prefetch distance in elements now in use (0: no software prefetch)."""
    return int(_C.cpu_prefetch_distance())


def set_prefetch_distance(elements: int) -> None:
    """Sets the prefetch distance in elements, 0 (off) to ``_C.cpu_prefetch_limit()`` (8192);
    any integer type (numpy and 0-dim integer tensors too), not a bool."""
    try:
        if isinstance(elements, bool):
            raise TypeError
        value = operator.index(elements)
    except TypeError:
        raise TypeError(f"elements must be an int, got {type(elements).__name__}") from None
    limit = int(_C.cpu_prefetch_limit())
    if not 0 <= value <= limit:
        raise ValueError(f"elements must be in [0, {limit}], got {value}")
    _C.set_cpu_prefetch_distance(value)


def check_env() -> None:
    """Refuses a malformed ``FUSEDLR_CPU_PREFETCH`` (the C++ side would ignore it silently),
    then has the C++ side read it, so a later change of the environment has no effect."""
    raw = os.environ.get(ENV, "")
    limit = int(_C.cpu_prefetch_limit())
    if raw != "" and not (re.fullmatch(r"[0-9]{1,8}", raw) and int(raw) <= limit):
        raise ValueError(
            f"{ENV} must be an integer number of elements in [0, {limit}], got {raw!r}")
    _C.cpu_prefetch_distance()  # the C++ side reads the variable once, now
