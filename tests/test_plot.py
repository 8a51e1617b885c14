"""fusedlr.plot: the PNG, and curve data equal to schedule.values() (the kernels' C++)."""

import subprocess
import sys

import pytest
import torch

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402 (matplotlib depends on pillow)

import fusedlr  # noqa: E402
from fusedlr.plotting import DPI, FIGSIZE  # noqa: E402
from fusedlr.schedules import (  # noqa: E402
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    SequentialLR,
    StepLR,
)

WARMUP_COSINE = SequentialLR([LinearLR(0.01, 1.0, 50), CosineAnnealingLR(950)], [50])


def _ydata(fig):
    return [torch.as_tensor(line.get_ydata(), dtype=torch.float64) for line in fig.axes[0].lines]


def test_png_size_and_curves_equal_values(tmp_path):
    scheds = [WARMUP_COSINE, StepLR(300, 0.5), ExponentialLR(0.997)]
    path = tmp_path / "lr.png"
    fig = fusedlr.plot(scheds, 1000, base_lr=0.1, path=path)
    assert path.exists()
    assert Image.open(path).size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
    ys = _ydata(fig)
    assert len(ys) == len(scheds)
    for s, y in zip(scheds, ys, strict=True):
        assert torch.equal(y, s.values(1000, 0.1))
        assert torch.equal(torch.as_tensor(fig.axes[0].lines[0].get_xdata()), torch.arange(1000))
    legend = [t.get_text().replace("\n    ", " ") for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [repr(s) for s in scheds]
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel() == "learning rate"


def test_single_schedule_and_no_path():
    fig = fusedlr.plot(MultiStepLR([3, 6], 0.5), 10)
    assert torch.equal(_ydata(fig)[0], MultiStepLR([3, 6], 0.5).values(10))


def test_long_legend_grows_the_figure(tmp_path):
    scheds = [SequentialLR([LinearLR(0.1, 1.0, i + 1), CosineAnnealingLR(90)], [i + 1])
              for i in range(4)]
    fig = fusedlr.plot(scheds, 100, path=tmp_path / "tall.png")
    w, h = Image.open(tmp_path / "tall.png").size
    assert (w, h) == tuple(round(v * DPI) for v in fig.get_size_inches())
    assert w == FIGSIZE[0] * DPI and h > FIGSIZE[1] * DPI


def test_optimizer_one_curve_per_group():
    a, b, c = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    opt = fusedlr.SGD(
        [
            {"params": [a], "lr": 0.1, "schedule": WARMUP_COSINE},
            {"params": [b], "lr": 0.01, "schedule": StepLR(2, 0.5), "steps_per_epoch": 3},
            {"params": [c], "lr": 0.05, "schedule": None},
        ],
        lr=1.0,
    )
    fig = fusedlr.plot(opt, 20)
    ya, yb, yc = _ydata(fig)
    assert torch.equal(ya, WARMUP_COSINE.values(20, 0.1, group=0))
    assert torch.equal(yb, StepLR(2, 0.5).values(7, 0.01, group=1).repeat_interleave(3)[:20])
    assert torch.equal(yc, torch.full((20,), 0.05, dtype=torch.float64))
    assert fig.axes[0].get_xlabel() == "optimizer step"


def test_optimizer_curve_is_what_training_uses():
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = fusedlr.SGD([p], lr=0.3, schedule=WARMUP_COSINE, steps_per_epoch=2)
    seen = []
    for _ in range(12):
        seen.append(float(opt.get_last_lr()[0]))
        p.grad = torch.zeros_like(p)
        opt.step()
    assert _ydata(fusedlr.plot(opt, 12))[0].tolist() == seen


@pytest.mark.parametrize(
    "bad, exc",
    [("StepLR(2)", TypeError), ([], ValueError), ([StepLR(2), lambda t: 1.0], TypeError),
     (torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), TypeError)],
)
def test_bad_inputs(bad, exc):
    with pytest.raises(exc):
        fusedlr.plot(bad, 10)


def test_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        fusedlr.plot(StepLR(2), 0)


def test_import_stays_light():
    code = ("import sys, fusedlr; assert 'matplotlib' not in sys.modules; "
            "from fusedlr.schedules import StepLR; fusedlr.plot(StepLR(2), 4); "
            "assert 'matplotlib' in sys.modules; "
            "import matplotlib; assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
