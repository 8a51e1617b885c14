"""Build and runtime information (``python -m fusedlr info``)."""

from __future__ import annotations

import torch

from fusedlr import _C, __version__
from fusedlr._cuda_arch import kernel_for


def _device_rows() -> dict:
    """Per visible GPU: the compiled code it runs (SASS, else PTX JIT), or that there is none."""
    rows = {}
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        cap = torch.cuda.get_device_capability(i)
        arch = kernel_for(cap, _C.cuda_archs())
        how = f"runs {arch}" if arch else "no kernel in this build (set TORCH_CUDA_ARCH_LIST)"
        if arch:
            how += f", {_C.cuda_kernel_arg_bytes(i)}-byte kernel arguments"
        rows[f"cuda:{i}"] = f"{torch.cuda.get_device_name(i)}, capability {cap[0]}.{cap[1]}: {how}"
    return rows


def info() -> dict:
    return {
        "fusedlr": __version__,
        "torch": torch.__version__,
        "torch CUDA": torch.version.cuda or "none (CPU build)",
        "CUDA kernels compiled": _C.cuda_compiled(),
        "CUDA archs": " ".join(_C.cuda_archs()) or "-",
        "CUDA 32 KB kernel arguments compiled": _C.cuda_large_args_compiled(),
        "CUDA device available": torch.cuda.is_available(),
        **_device_rows(),
        "CPU vector ISA": _C.cpu_isa(),
        "CPU prefetch distance (elements)": _C.cpu_prefetch_distance(),
        "CPU kernels parallel (OpenMP)": _C.cpu_openmp(),
        "CPU threads": torch.get_num_threads(),
    }


def format_info() -> str:
    rows = info()
    width = max(len(k) for k in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows.items())
