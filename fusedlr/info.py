"""Build and runtime information (``python -m fusedlr info``)."""

from __future__ import annotations

import torch

from fusedlr import _C, __version__


def info() -> dict:
    return {
        "fusedlr": __version__,
        "torch": torch.__version__,
        "torch CUDA": torch.version.cuda or "none (CPU build)",
        "CUDA kernels compiled": _C.cuda_compiled(),
        "CUDA archs": _C.cuda_archs() or "-",
        "CUDA device available": torch.cuda.is_available(),
        "CPU vector ISA": _C.cpu_isa(),
        "CPU kernels parallel (OpenMP)": _C.cpu_openmp(),
        "CPU threads": torch.get_num_threads(),
    }


def format_info() -> str:
    rows = info()
    width = max(len(k) for k in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows.items())
