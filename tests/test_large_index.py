"""One real CPU step on a tensor of more than 2^31 elements (int64 element indexing).

bfloat16 SGD without momentum keeps no per-element state, so 2^31 + 17 elements cost
4 GiB of param + 4 GiB of grad: the largest case that fits comfortably on a 24 GiB machine
(an fp32 param would need 16 GiB, Adam's fp32 state another 16). The CUDA launch-plan
arithmetic past 2^31 is tested through the emulator (test of the CUDA path), not here.

Marked ``slow``; it runs in the default suite (it takes well under a minute) and skips itself
when less than 12 GiB of memory is available. Deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import pytest
import torch

import fusedlr

N = (1 << 31) + 17
NEED = 12 << 30  # 8 GiB of tensors + headroom


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.slow
def test_sgd_step_past_2_pow_31_elements():
    avail = _available()
    if avail < NEED:
        pytest.skip(f"needs {NEED >> 30} GiB of available memory, {avail / 2**30:.1f} GiB free")
    lr = 0.5
    p = torch.ones(N, dtype=torch.bfloat16).requires_grad_()
    p.grad = torch.zeros(N, dtype=torch.bfloat16)
    # distinct grads at both ends, around 2^31 and at a chunk boundary; zero elsewhere
    idx = torch.tensor([0, 1, 16383, 16384, (1 << 31) - 1, 1 << 31, (1 << 31) + 1, N - 2, N - 1])
    vals = torch.arange(1, len(idx) + 1, dtype=torch.bfloat16) / 8
    p.grad[idx] = vals
    opt = fusedlr.SGD([p], lr=lr)
    opt.step()
    expected = (1 - lr * vals.float()).to(torch.bfloat16)
    assert torch.equal(p.detach()[idx], expected)
    p.detach()[idx] = 1  # everything else must be untouched: all ones again
    changed = torch.count_nonzero(p.detach() != 1).item()
    assert changed == 0
    del p, opt
