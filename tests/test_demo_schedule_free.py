"""The schedule-free demo: fusedlr.SGDScheduleFree and the schedulefree package train the demo
MLP on the same batches to the same result (float32 rounding apart), and it learns."""

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("schedulefree", reason="the demo compares with the schedulefree package")

from fusedlr.demo_schedule_free import run_schedule_free_demo  # noqa: E402


def test_schedule_free_demo_matches_the_package_and_learns():
    result = run_schedule_free_demo(epochs=3, seed=0)
    theirs, ours = result.runs
    assert "fusedlr" in ours.name and "schedulefree" in theirs.name
    torch.testing.assert_close(torch.tensor(ours.step_loss), torch.tensor(theirs.step_loss),
                               rtol=1e-4, atol=1e-5)
    for a, b in zip(ours.final_params, theirs.final_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert abs(ours.epoch_acc[-1] - theirs.epoch_acc[-1]) <= 2 / 360
    assert ours.epoch_acc[-1] > 0.8
    assert "accuracy at x" in result.report
