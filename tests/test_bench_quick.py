"""Smoke runs of the benchmarks' --quick mode (schedulefree, clip, layouts, master, stream):
tiny sizes, a few samples, no timing asserts; the table has every row and names the machine."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# script -> (a row marker, how many rows have it, another string the table must hold)
CASES = {
    "bench_schedulefree.py": ("| fusedlr |", 4, "schedulefree foreach"),
    "bench_clip.py": ("| fusedlr AdamW(max_grad_norm=1.0) |", 3, "clip_grad_norm_(foreach)"),
    "bench_layouts.py": ("| channels_last |", 2, "| contiguous |"),
    "bench_master.py": ("| one pass |", 4, "| three passes |"),
    "bench_stream.py": ("| fusedlr prefetch 512 |", 6, "| fusedlr prefetch 0 |"),
}


@pytest.mark.parametrize("script", list(CASES))
def test_bench_quick_prints_a_table(tmp_path, script):
    if script == "bench_schedulefree.py":
        pytest.importorskip("schedulefree", reason="the benchmark's baseline is the "
                            "schedulefree package (pip install schedulefree)")
    out = tmp_path / "results.md"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    marker, count, other = CASES[script]
    assert text.count(marker) == count and other in text, text
    assert "Machine:" in text
