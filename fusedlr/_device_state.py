"""Per-device tensors that one optimizer step reads and writes.

Everything here is allocated once (at construction, or when the group layout
changes) and updated in place afterwards, so a captured CUDA graph keeps valid
pointers.
"""

from __future__ import annotations

import torch

GROUP_FIELDS = 16  # csrc/include/schedule.h kGroupFields

# Row layout of the per-group hyperparameters (schedule.h, GroupField).
BASE_LR = 0
WEIGHT_DECAY = 1
MOMENTUM = 2  # SGD momentum / Adam beta1
DAMPENING = 3  # SGD dampening / Adam beta2
EPS = 4
NESTEROV = 5
MAXIMIZE = 6
AMSGRAD = 7
DECOUPLED = 8
STEPS_PER_EPOCH = 9
SCHEDULE_ROOT = 10
GROUP_LR_SCALE = 11  # group['lr_scale'] (timm's layer-decay factor), 1 when absent


def resized_scale(scale: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Per-group factors for n_groups groups: the old groups' kept, new ones 1 (same tensor
    when the count is unchanged)."""
    if scale.shape[0] == n_groups:
        return scale
    new = torch.ones(n_groups, dtype=torch.float64, device=scale.device)
    keep = min(scale.shape[0], n_groups)
    new[:keep].copy_(scale[:keep])
    return new


class DeviceState:
    """Schedule counter, group rows, plateau scale and evaluated lrs on one device."""

    def __init__(self, device: torch.device, host_rows: torch.Tensor, program: torch.Tensor):
        self.device = device
        n_groups = host_rows.shape[0]
        self.counter = torch.zeros(1, dtype=torch.int64, device=device)
        self.one = torch.ones(1, dtype=torch.int64, device=device)  # counter.add_(1) allocates
        self.applied = None  # skip_schedule_on_inf: 1 - found_inf as int64, allocated once
        # On the CPU the device rows are the host rows themselves: no copy per change.
        self.hparams = host_rows if device.type == "cpu" else host_rows.to(device)
        self.lr_scale = torch.ones(n_groups, dtype=torch.float64, device=device)
        self.group_lr = torch.zeros(n_groups, 2, dtype=torch.float64, device=device)
        self.program = program.to(device)

    def resize(self, host_rows: torch.Tensor, program: torch.Tensor) -> None:
        """New group count or program: keeps the counter tensor and the scales of old groups."""
        n_new = host_rows.shape[0]
        if n_new != self.lr_scale.shape[0]:
            self.lr_scale = resized_scale(self.lr_scale, n_new)
            self.group_lr = torch.zeros(n_new, 2, dtype=torch.float64, device=self.device)
        if self.device.type == "cpu":
            self.hparams = host_rows
        elif self.hparams.shape != host_rows.shape:
            self.hparams = host_rows.to(self.device)
        else:
            self.hparams.copy_(host_rows, non_blocking=True)
        self.set_program(program)

    def set_program(self, program: torch.Tensor) -> None:
        if self.program.shape == program.shape:
            self.program.copy_(program, non_blocking=True)
        else:
            self.program = program.to(self.device)

    def upload_rows(self, host_rows: torch.Tensor) -> None:
        if self.hparams is not host_rows:
            self.hparams.copy_(host_rows, non_blocking=True)

    def applied_like(self, found_inf: torch.Tensor) -> torch.Tensor:
        """An int64 buffer shaped like found_inf, allocated once (no allocation per step)."""
        if self.applied is None or self.applied.shape != found_inf.shape:
            self.applied = torch.zeros(found_inf.shape, dtype=torch.int64, device=self.device)
        return self.applied
