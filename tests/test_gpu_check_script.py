"""tools/gpu_check.sh and its helpers, on a machine without a GPU: the dry run, the no-GPU exit,
CUDA-only checks reporting SKIP (never PASS) and the CUDA-test selection plugin."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")
ENV = dict(os.environ, PYTHONPATH=ROOT, PY=sys.executable)


def _run(args, tmp_path, **kw):
    env = dict(ENV, OUT=str(tmp_path / "out"), **kw)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_script_parses_and_rejects_unknown_arguments(tmp_path):
    assert _run(["bash", "-n", SCRIPT], tmp_path).returncode == 0
    bad = _run(["bash", SCRIPT, "--bogus"], tmp_path)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr


def test_dry_run_plans_every_phase(tmp_path):
    res = _run(["bash", SCRIPT, "--dry-run"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    for phase in ("build", "tests", "extra", "bench"):
        assert f"[{phase}] cap " in res.stdout
    assert "FAIL " not in res.stdout
    files = [
        os.path.relpath(os.path.join(d, f), tmp_path / "out")
        for d, _, fs in os.walk(tmp_path / "out")
        for f in fs
    ]
    assert "summary.txt" in files and len(files) <= 8
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_without_gpu_says_so_and_builds_nothing(tmp_path):
    res = _run(["bash", SCRIPT], tmp_path)
    assert res.returncode == 3
    assert "no CUDA device" in res.stdout and "--dry-run" in res.stdout
    assert not (tmp_path / "out" / "build.log").exists()


def test_cuda_only_checks_report_skip_not_pass(tmp_path):
    only = (
        "no_sync_no_alloc,grad_scaler_no_sync,graph_found_inf_replay,launches_per_step,"
        "flat_bandwidth,compile_step"
    )
    res = _run([sys.executable, "tools/gpu_extra.py", "--device", "cpu", "--only", only], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if re.match(r"(PASS|FAIL|SKIP) ", ln)]
    assert len(lines) == 6 and all(ln.startswith("SKIP ") for ln in lines), res.stdout


def test_selection_plugin_keeps_only_cuda_tests(tmp_path):
    env = dict(PYTHONPATH=f"{ROOT}{os.pathsep}{os.path.join(ROOT, 'tools')}")
    res = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "gpu_pytest_select",
            "--cuda-marked",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_cuda_gpu_plans.py",
            "tests/test_host_lr.py",
        ],
        tmp_path,
        **env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    ids = [ln for ln in res.stdout.splitlines() if "::" in ln]
    assert ids and all("cuda" in i for i in ids), ids
    assert "tests/test_host_lr.py::test_no_sync_on_cuda" in ids
    assert not any("[cpu" in i for i in ids)
