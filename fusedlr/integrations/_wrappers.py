"""The fusedlr optimizer inside the wrappers frameworks put around optimizers.

accelerate's ``AcceleratedOptimizer`` and DeepSpeed's wrapper keep it as ``.optimizer``,
Lightning's ``LightningOptimizer`` as ``._optimizer``. No framework is imported here.
"""

from __future__ import annotations

import torch

import fusedlr

FUSEDLR_OPTIMIZERS = (fusedlr.SGD, fusedlr.Adam)  # AdamW subclasses Adam
_MAX_WRAPPER_DEPTH = 16


def find_fused(optimizer) -> torch.optim.Optimizer | None:
    """The fusedlr optimizer: ``optimizer`` itself or the one found by following ``.optimizer``
    / ``._optimizer`` through wrappers; None when there is none."""
    inner = optimizer
    for _ in range(_MAX_WRAPPER_DEPTH):
        if isinstance(inner, FUSEDLR_OPTIMIZERS):
            return inner
        inner = getattr(inner, "optimizer", None) or getattr(inner, "_optimizer", None)
        if inner is None:
            return None
    return None


def unwrap(optimizer) -> torch.optim.Optimizer:
    """``find_fused``, raising ``TypeError`` when there is no fusedlr optimizer inside."""
    fused = find_fused(optimizer)
    if fused is None:
        raise TypeError(
            f"optimizer: expected a fusedlr optimizer (fusedlr.SGD / Adam / AdamW) or a wrapper "
            f"around one, got {type(optimizer).__name__} wrapping no fusedlr optimizer"
        )
    return fused
