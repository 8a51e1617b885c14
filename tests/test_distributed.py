"""2-process gloo training on the CPU: DDP, ZeroRedundancyOptimizer and FSDP2 with fusedlr.

One spawn (loopback, a free port, a hard timeout) runs every scenario; each test compares one
scenario with a single-process run over the concatenated batch.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
import _dist_worker as worker  # noqa: E402

TIMEOUT = 180  # seconds for the whole 2-process run

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("dist")
    worker.launch(str(outdir), timeout=TIMEOUT)
    return torch.load(outdir / "rank0.pt")


@pytest.mark.parametrize("scenario", worker.SCENARIOS)
def test_two_processes_match_one_process_on_the_concatenated_batch(distributed_run, scenario):
    got = distributed_run["results"][scenario]
    ref = worker.single_process(scenario)
    init = [p.detach() for p in worker.make_model().parameters()]
    for a, b, c in zip(got, ref, init, strict=True):
        assert not torch.equal(b, c)  # it trained
        # float64; the all-reduce sums in another order than one big batch
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_zero_shards_the_params_between_ranks(distributed_run):
    n_params = len(list(worker.make_model().parameters()))
    assert 0 < distributed_run["notes"]["zero_local_params"] < n_params


def test_fsdp2_updates_dtensor_params_through_local_shards(distributed_run):
    full = [tuple(p.shape) for p in worker.make_model().parameters()]
    local = distributed_run["notes"]["fsdp2_local_shapes"]
    # Shard(0): rank 0 holds ceil(dim0 / 2) rows of each param
    assert local == [((s[0] + 1) // 2, *s[1:]) for s in full]


@pytest.mark.parametrize("scenario", ["ddp_adamw_clip", "fsdp2_adamw_clip"])
def test_clipping_uses_the_global_norm(distributed_run, scenario):
    """max_grad_norm under DDP (grads already reduced) and FSDP2 (each rank holds half of every
    grad: the local norms are all-reduced): the last step's norm is the single-process one,
    and above max_grad_norm (so every step was clipped by the global coefficient)."""
    _, norm = worker.single_process(scenario, with_norm=True)
    got = distributed_run["notes"][f"{scenario}_last_norm"]
    assert norm > worker.MAX_NORM
    assert got == pytest.approx(norm, rel=1e-10)
