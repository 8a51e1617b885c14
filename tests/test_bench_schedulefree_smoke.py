"""Smoke run of benchmarks/bench_schedulefree.py: tiny sizes, a few samples, no timing asserts."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_schedulefree.py")


def test_bench_schedulefree_quick_prints_a_table(tmp_path):
    pytest.importorskip("schedulefree", reason="the benchmark's baseline is the schedulefree "
                        "package (pip install schedulefree)")
    out = tmp_path / "results.md"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.count("| fusedlr |") == 4 and "schedulefree foreach" in text
    assert "Machine:" in text
