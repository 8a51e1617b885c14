"""Smoke run of benchmarks/bench_step.py: tiny sizes, a few iterations, no timing asserts."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench_step.py")


def test_bench_step_quick_prints_tables(tmp_path):
    out_json = tmp_path / "bench.json"
    # One intra-op thread: the smoke run checks that the script works, and a loaded 2-core CI
    # machine makes torch's per-tensor parallel regions (fused=True baseline) very slow.
    cmd = [
        sys.executable,
        SCRIPT,
        "--quick",
        "--threads",
        "1",
        "--breakdown",
        "--json",
        str(out_json),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## Step time" in out
    header = next(line for line in out.splitlines() if line.startswith("| case | optimizer"))
    for name in ("fusedlr", "torch foreach+sched", "torch fused+sched"):
        assert name in header
    rows = [line for line in out.splitlines() if line.startswith("| small2000x64 | Adam |")]
    assert rows, out
    for section in (
        "effective bandwidth",
        "bf16 vs fp32",
        "Many small tensors",
        "Memory:",
        "fusedlr step() pieces",
        "streaming bandwidth",
    ):
        assert section in out, section
    assert out_json.exists()
