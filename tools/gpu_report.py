"""PASS / FAIL / SKIP lines for the GPU check scripts (tools/gpu_extra.py, tools/gpu_timing.py).

Every check reports one or more lines ``PASS <name> <detail>``, ``FAIL <name> <detail>`` or
``SKIP <name> <reason>``; tools/gpu_check.sh collects them into its summary. A check that
cannot run where it is (no CUDA device, no CUDA kernels) reports SKIP, never PASS.
"""

from __future__ import annotations

import functools
import time
import traceback

import torch

FAILED: list[str] = []
SKIPPED: list[str] = []
PASSED: list[str] = []


def report(name: str, ok: bool, msg: str = "") -> None:
    """One result line; ok=False counts as a failure."""
    print(f"{'PASS' if ok else 'FAIL'} {name} {msg}".rstrip(), flush=True)
    (PASSED if ok else FAILED).append(name)


def skip(name: str, reason: str) -> None:
    print(f"SKIP {name} ({reason})", flush=True)
    SKIPPED.append(name)


def cuda_reason(device: torch.device) -> str | None:
    """Why a CUDA-only check cannot run on `device` (None: it can)."""
    if device.type != "cuda":
        return f"needs CUDA, running on {device.type}"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    from fusedlr import _C

    if not _C.cuda_compiled():
        return "fusedlr was built without CUDA kernels"
    return None


def check(fn=None, *, cuda_only: bool = False):
    """Runs a check function(device, quick): an exception is a FAIL with its traceback printed;
    with cuda_only=True the check reports SKIP where CUDA is unavailable."""

    def wrap(f):
        @functools.wraps(f)
        def run(device, quick):
            if cuda_only and (why := cuda_reason(device)) is not None:
                skip(f.__name__, why)
                return
            t0 = time.perf_counter()
            try:
                f(device, quick)
            except Exception as e:  # noqa: BLE001 (a check's crash is its result)
                traceback.print_exc()
                report(f.__name__, False, f"raised {type(e).__name__}: {e}")
            finally:
                if device.type == "cuda" and torch.cuda.is_available():
                    torch.cuda.set_sync_debug_mode("default")
            print(f"  ({f.__name__}: {time.perf_counter() - t0:.1f} s)", flush=True)

        run.cuda_only = cuda_only
        return run

    return wrap(fn) if fn is not None else wrap


def place(values: torch.Tensor, device, dtype: torch.dtype, offset: int) -> torch.Tensor:
    """`values` (CPU) copied into a tensor whose data starts `offset` elements into a fresh
    allocation: offset 1 is not 16-byte aligned (the kernels' scalar path)."""
    storage = torch.empty(values.numel() + offset, device=device, dtype=dtype)
    return storage[offset:].view(values.shape).copy_(values)


def summary() -> int:
    """Prints the counts; the exit status: 1 if anything failed."""
    print(f"gpu checks: {len(PASSED)} passed, {len(FAILED)} failed, {len(SKIPPED)} skipped")
    if FAILED:
        print("failed: " + ", ".join(FAILED))
    return 1 if FAILED else 0
