"""The command line (end to end in subprocesses) and the schedule spec parser."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from fusedlr import cli  # noqa: E402
from fusedlr.schedules import (  # noqa: E402
    ChainedScheduler,
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiStepLR,
    SequentialLR,
    StepLR,
)
from fusedlr.spec_parser import parse_schedule, schedule_names  # noqa: E402

SPEC = "SequentialLR([LinearLR(0.01, 1.0, 500), CosineAnnealingLR(9500)], [500])"


def run(*args, cwd=None, timeout=240):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "fusedlr", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


# -- subprocess: each command end to end ----------------------------------------------------------
def test_plot_command(tmp_path):
    out = tmp_path / "lr.png"
    r = run("plot", SPEC, "StepLR(3000, 0.5)", "--steps", "10000", "--base-lr", "0.1", "-o",
            str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    assert Image.open(out).size == (800, 450)


def test_malformed_spec_exits_2_with_one_line(tmp_path):
    # more malformed specs and bad arguments go through the same main() in process, below
    fragment = "only schedule names"
    r = run("plot", "__import__('os').system('touch pwned')", "--steps", "10", cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fusedlr: error: "), r.stderr
    assert fragment in lines[0]
    assert r.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing written, nothing executed


def test_info_command():
    r = run("info")
    assert r.returncode == 0, r.stderr
    assert "torch" in r.stdout and "CPU vector ISA" in r.stdout


def test_find_lr_command(tmp_path):
    out = tmp_path / "find_lr.png"
    r = run("find-lr", "--num-steps", "20", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "suggested lr" in r.stdout or "no suggestion" in r.stdout
    assert out.exists()


def test_find_lr_method_option(tmp_path):
    out = tmp_path / "find_lr.png"
    r = run("find-lr", "--method", "valley", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "suggested lr:" in r.stdout and "(valley: fastai's valley)" in r.stdout
    bad = run("find-lr", "--method", "guess", "-o", str(out))
    assert bad.returncode != 0 and "invalid choice" in bad.stderr


def test_demo_command(tmp_path):
    r = run("demo", "--quick", "--epochs", "2", "--no-progress", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "torch.optim.SGD + lr_scheduler" in r.stdout and "fusedlr.SGD(schedule=...)" in r.stdout
    assert "optimizer time per step" in r.stdout
    rows = [line for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_loss.png", "demo_lr.png"]


def test_console_script_entry_point():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="console_scripts") if ep.name == "fusedlr"]
    if not eps:
        pytest.skip("fusedlr is not installed as a distribution")
    assert eps[0].value == "fusedlr.__main__:main"
    assert eps[0].load() is cli.main


# -- in process (the same main()): more malformed specs and arguments ---------------------------
@pytest.mark.parametrize("argv, fragment", [
    (["plot", "CosineAnealingLR(100)", "--steps", "10"], "did you mean CosineAnnealingLR"),
    (["plot", "StepLR(2", "--steps", "10"], "invalid syntax"),
    (["plot", "StepLR(0)", "--steps", "10"], "step_size must be >= 1"),
    (["plot", "StepLR(2)", "--steps", "-5"], "--steps"),
    (["plot", "StepLR(2)", "StepLR(", "--steps", "10"], "'StepLR('"),
    (["demo", "--epochs", "x"], "--epochs"),
    (["frobnicate"], "invalid choice"),
    (["plot", "StepLR(2)", "--steps", "10", "--base-lr", "nan"], "--base-lr"),
    (["plot", "StepLR(2)", "--steps", "10", "-o", "nodir/x.png"], "does not exist"),
    (["plot", "StepLR(2)", "--steps", "10", "-o", "x.jpg"], ".png"),
    (["plot", "--steps", "10"], "SPEC"),
    (["plot", "StepLR(2)"], "--steps"),
    (["plot", "[StepLR(2)]", "--steps", "10"], "got a list"),
    (["demo", "--epochs", "1"], "at least 2"),
    (["find-lr", "--start-lr", "1", "--end-lr", "0.5"], "--end-lr"),
    ([], "required"),
])
def test_argument_errors_in_process(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fusedlr: error: ") and fragment in err, err
    assert not list(tmp_path.iterdir())


# -- the spec parser -------------------------------------------------------------------------------
EXAMPLES = [
    SequentialLR([LinearLR(0.01, 1.0, 500), CosineAnnealingLR(9500)], [500]),
    StepLR(30, 0.1),
    MultiStepLR([3, 8], gamma=0.5),
    ChainedScheduler([ConstantLR(0.5, 3), ExponentialLR(0.9)]),
    CosineAnnealingLR(100, eta_min=1e-5),
    LambdaLR([1.0, 0.5, 0.25]),
]


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda s: type(s).__name__)
def test_parse_repr_round_trip(spec):
    assert parse_schedule(repr(spec)) == spec


def test_parse_the_issue_example_and_literals():
    assert parse_schedule(SPEC) == EXAMPLES[0]
    assert parse_schedule("  StepLR(step_size=2, gamma=+0.5)\n") == StepLR(2, 0.5)
    assert parse_schedule("MultiStepLR((3, 8), 0.5)") == MultiStepLR([3, 8], 0.5)
    assert parse_schedule("CosineAnnealingLR(T_max=10, eta_min=0)") == CosineAnnealingLR(10)


def test_every_exported_schedule_is_callable_by_name():
    names = schedule_names()
    assert {"StepLR", "SequentialLR", "CosineAnnealingLR"} <= set(names)
    assert "Schedule" not in names and "ProgramBuilder" not in names


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("StepLR", "must be called"),
    ("Steplr(2)", "did you mean StepLR"),
    ("os.system('x')", "only schedule names"),
    ("eval('1')", "unknown schedule 'eval'"),
    ("StepLR(2, gamma=1/2)", "operators are not allowed"),
    ("StepLR(*[2])", "*arguments"),
    ("StepLR(**{'step_size': 2})", "**arguments"),
    ("StepLR(2, gamma=0.5, gamma=0.1)", "given twice"),
    ("StepLR(x)", "unknown name 'x'"),
    ("StepLR(2, b'0.5')", "not allowed"),
    ("StepLR(2, -'a')", "numbers only"),
    ("StepLR(step=2)", "unexpected keyword argument 'step'"),
    ("StepLR(2, 0.5, 3)", "positional arguments"),
    ("StepLR(2, -0.5)", "gamma must be > 0"),
    ("SequentialLR([StepLR(2), StepLR(3)], [])", "expected 1 milestones"),
    ("SequentialLR([1], [])", "must be a fusedlr.schedules spec"),
    ("[StepLR(2)]", "got a list"),
    ("3", "got the literal 3"),
    ("(lambda: 1)()", "only schedule names"),
    ("[x for x in ()]", "not allowed"),
    ("StepLR(2)\nimport os", "invalid syntax"),
    ("(" * 300 + ")" * 300, "nest"),
])
def test_parse_errors_are_one_line_value_errors(text, fragment):
    with pytest.raises(ValueError) as info:
        parse_schedule(text)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("bad schedule spec: ")
    assert fragment in msg, msg


def test_parse_rejects_non_strings_and_huge_input():
    with pytest.raises(ValueError, match="expected a string"):
        parse_schedule(StepLR(2))
    with pytest.raises(ValueError, match="longer than"):
        parse_schedule("StepLR(2" + " " * 200_000 + ")")
