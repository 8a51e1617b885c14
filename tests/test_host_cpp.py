"""Host-only C++ tests of the CUDA path's host code (``tests/cpp/*.cpp``), built with g++.

Each program is compiled with AddressSanitizer and UBSan (alignment included, every report
fatal) against ``csrc/include`` and run; it prints ``ok: ...`` and exits 0, or prints its first
failure and exits 1. ``tools/sanitize.sh`` builds and runs the same programs.

- ``plan_test.cpp``: the launch plan of ``multi_tensor.h`` over thousands of random buckets
  against brute-force (tensor, chunk) counts.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPP = os.path.join(ROOT, "tests", "cpp")
SANITIZE = [
    "-fsanitize=address,undefined,alignment",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]


def _gxx():
    gxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++ on PATH: the host C++ tests need a C++17 compiler")
    return gxx


def build_and_run(tmp_path, source, extra_flags=(), args=(), timeout=240):
    """Compiles tests/cpp/<source> with the sanitizers, runs it, returns its stdout."""
    exe = str(tmp_path / os.path.splitext(source)[0])
    cmd = [
        _gxx(),
        "-std=c++17",
        "-O1",
        "-g",
        *SANITIZE,
        "-I" + os.path.join(ROOT, "csrc", "include"),
        *extra_flags,
        os.path.join(CPP, source),
        "-o",
        exe,
    ]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert build.returncode == 0, f"{' '.join(cmd)}\n{build.stderr[-4000:]}"
    env = dict(
        os.environ,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
    )
    env.pop("LD_PRELOAD", None)
    run = subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"{source} failed ({run.returncode}):\n{out[-4000:]}"
    assert "runtime error" not in out and "AddressSanitizer" not in out, out[-4000:]
    assert run.stdout.strip().splitlines()[-1].startswith("ok:"), out[-4000:]
    return run.stdout


def test_launch_plan_random_buckets(tmp_path):
    out = build_and_run(tmp_path, "plan_test.cpp")
    plans = int(out.split("ok: ")[1].split()[0])
    assert plans >= 3000, out
