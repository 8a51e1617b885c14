"""Host-only C++ tests of the CUDA path's host code (``tests/cpp/*.cpp``), built with g++.

Each program is compiled with AddressSanitizer and UBSan (alignment included, every report
fatal) against ``csrc/include`` and run; it prints ``ok: ...`` and exits 0, or prints its first
failure and exits 1. ``tools/sanitize.sh`` builds and runs the same programs.

- ``plan_test.cpp``: the launch plan of ``multi_tensor.h`` over thousands of random buckets
  against brute-force (tensor, chunk) counts.
- ``vector_test.cpp``: the device's vector branch of ``load_vec`` / ``store_vec`` (selected on the
  host by ``FUSEDLR_HOST_VECTOR_PATH``) and the ``__half`` / ``__nv_bfloat16`` conversions of
  ``elem_traits_cuda.h`` (the CUDA toolkit's headers, host side), against element copies, a
  decoder of the formats, and the blocks' strided scalar path. Needs the toolkit's headers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

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


def cuda_include_dir():
    """The CUDA toolkit's include folder (CUDA_HOME, or the root nvcc really uses), or None."""
    root = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = shutil.which("nvcc")
    if not root and nvcc:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.cu")
            open(src, "w").close()
            out = subprocess.run(
                [nvcc, "--dryrun", "-v", "-c", src, "-o", src + ".o"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        match = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
        root = match.group(1).strip() if match else None
    inc = os.path.join(root, "include") if root else None
    return inc if inc and os.path.isfile(os.path.join(inc, "cuda_fp16.h")) else None


def _vector_flags():
    inc = cuda_include_dir()
    if inc is None:
        pytest.skip("no CUDA toolkit headers (cuda_fp16.h): set CUDA_HOME or put nvcc on PATH")
    return ["-DFUSEDLR_HOST_VECTOR_PATH", "-I" + os.path.join(ROOT, "csrc"), "-I" + inc]


def build(tmp_path, source, extra_flags=(), timeout=240):
    """Compiles tests/cpp/<source> with the sanitizers; returns the executable's path."""
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
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stderr[-4000:]}"
    return exe


def run(exe, args=(), timeout=240):
    env = dict(
        os.environ,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
    )
    env.pop("LD_PRELOAD", None)
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def build_and_run(tmp_path, source, extra_flags=(), args=(), timeout=240):
    """Compiles tests/cpp/<source> with the sanitizers, runs it, returns its stdout."""
    run_ = run(build(tmp_path, source, extra_flags, timeout), args, timeout)
    out = run_.stdout + run_.stderr
    assert run_.returncode == 0, f"{source} failed ({run_.returncode}):\n{out[-4000:]}"
    assert "runtime error" not in out and "AddressSanitizer" not in out, out[-4000:]
    assert run_.stdout.strip().splitlines()[-1].startswith("ok:"), out[-4000:]
    return run_.stdout


def test_launch_plan_random_buckets(tmp_path):
    out = build_and_run(tmp_path, "plan_test.cpp")
    plans = int(out.split("ok: ")[1].split()[0])
    assert plans >= 3000, out


@pytest.fixture(scope="module")
def vector_exe(tmp_path_factory):
    return build(tmp_path_factory.mktemp("vector"), "vector_test.cpp", _vector_flags())


def test_vector_path_and_16bit_conversions(vector_exe):
    out = run(vector_exe)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "runtime error" not in text and "AddressSanitizer" not in text, text[-4000:]
    assert out.stdout.strip().splitlines()[-1].startswith("ok:"), text[-4000:]


def test_misaligned_vector_load_is_reported(vector_exe):
    """The alignment check is live: a vector load 4 bytes past 16 must stop the program."""
    out = run(vector_exe, ["misaligned"])
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "misaligned address" in text, text[-4000:]


def test_prefetch_lines(tmp_path):
    """csrc/cpu/prefetch.h asks for each streamed line once, `distance` elements ahead."""
    out = build_and_run(tmp_path, "prefetch_test.cpp", ["-I" + os.path.join(ROOT, "csrc")])
    assert int(out.split("ok: ")[1].split()[0]) > 10000, out
