"""The repository is clean under its own ruff and clang-format configurations."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_check_is_clean():
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    out = subprocess.run([*cmd, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_clang_format_is_clean():
    tool = shutil.which("clang-format")
    if tool is None:
        pytest.skip("clang-format is not installed (pip install clang-format)")
    files = sorted(
        f
        for pattern in ("csrc/**/*.h", "csrc/**/*.cpp", "csrc/**/*.cu", "tests/cpp/*.cpp")
        for f in glob.glob(os.path.join(ROOT, pattern), recursive=True)
    )
    assert files
    out = subprocess.run([tool, "--dry-run", "--Werror", *files], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[:4000]
