"""Refuses, when a param group is added, a CUDA param on a GPU this build has no kernel for.

Without it, the first ``step()`` fails inside a kernel launch ("no kernel image is available").
CPU params cost one device-type test; each GPU is asked once per process.
"""

from __future__ import annotations

import functools

import torch

from fusedlr import _C
from fusedlr._cuda_arch import no_kernel_message


@functools.cache
def missing_kernel(index: int) -> str | None:
    """None when this build runs on ``cuda:index``, else why not and how to rebuild."""
    return no_kernel_message(
        f"cuda:{index}",
        torch.cuda.get_device_name(index),
        torch.cuda.get_device_capability(index),
        _C.cuda_archs(),
    )


def check_cuda_kernels(params, group_index: int) -> None:
    """RuntimeError naming the first param whose GPU has no kernel in this build."""
    for i, p in enumerate(params):
        if p.device.type == "cuda":
            problem = missing_kernel(p.device.index)
            if problem is not None:
                raise RuntimeError(f"param {i} of param group {group_index}: {problem}")
