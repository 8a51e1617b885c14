"""The demo: torch.optim.SGD + lr_scheduler and fusedlr.SGD(schedule=...) train the same
network on the same seed and batches to the same result (float32 rounding apart)."""

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")
pytest.importorskip("matplotlib")

from fusedlr import demo  # noqa: E402

EPOCHS = 3


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return demo.run_demo(epochs=EPOCHS, out_dir=str(out), seed=0, progress=False)


def test_same_accuracy_and_loss(result):
    tr, fr = result.torch_run, result.fusedlr_run
    assert len(tr.epoch_acc) == len(fr.epoch_acc) == EPOCHS
    n_test = 360
    for a, b in zip(tr.epoch_acc, fr.epoch_acc, strict=True):
        assert abs(a - b) <= 2 / n_test  # at most 2 of 360 test images differ
    torch.testing.assert_close(torch.tensor(fr.step_loss), torch.tensor(tr.step_loss),
                               rtol=1e-4, atol=1e-5)
    assert fr.epoch_acc[-1] > 0.85  # it really learns
    for a, b in zip(tr.final_params, fr.final_params, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_same_lr_every_step(result):
    tr, fr = result.torch_run, result.fusedlr_run
    assert len(tr.step_lr) == len(fr.step_lr) == EPOCHS * result.steps_per_epoch
    torch.testing.assert_close(torch.tensor(fr.step_lr, dtype=torch.float64),
                               torch.tensor(tr.step_lr, dtype=torch.float64),
                               rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.tensor(fr.epoch_lr), torch.tensor(tr.epoch_lr),
                               rtol=1e-12, atol=1e-15)
    assert max(tr.step_lr) == pytest.approx(demo.LR)  # warmup reached the peak


def test_report_and_pngs(result):
    lines = result.report.splitlines()
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, EPOCHS + 1))
    assert all(len(r) == 7 for r in rows)  # epoch + (loss, acc, lr) twice
    assert "optimizer time per step" in result.report
    assert sorted(p.rsplit("/", 1)[-1] for p in result.files) == ["demo_loss.png", "demo_lr.png"]
    from PIL import Image

    for p in result.files:
        assert Image.open(p).size == (800, 450)


def test_schedule_matches_torch_sequential_lr():
    spe, epochs = 23, 4
    spec = demo.demo_schedule(spe, epochs)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=demo.LR)
    sched = demo._torch_scheduler(opt, spe, epochs)
    expected = []
    for _ in range(spe * epochs):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    torch.testing.assert_close(spec.values(spe * epochs, demo.LR),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15)
