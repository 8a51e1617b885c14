"""The built extension has no AVX code where a CPU without AVX2/AVX-512 could reach it.

See tools/check_isa_leaks.py: a helper instantiated in an ISA translation unit must not
become the weak definition that the default kernels and the rest of the library call.
"""

from __future__ import annotations

import importlib.util
import platform
import shutil
from pathlib import Path

import fusedlr._C
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("check_isa_leaks",
                                                  ROOT / "tools" / "check_isa_leaks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or shutil.which("objdump") is None,
    reason="x86-64 ISA builds only; needs objdump (binutils)",
)


def test_the_isa_kernels_are_found():
    """The scan sees the AVX2 and AVX-512 kernels (so an empty leak list means something)."""
    found = _checker().avx_functions(Path(fusedlr._C.__file__))
    assert any("fusedlr::isa_avx512::adam_update_span<float, false>" in f for f in found)
    assert any("fusedlr::isa_avx2::sgd_update_span<float, false>" in f for f in found)


def test_no_avx_code_outside_the_isa_namespaces():
    assert _checker().leaks(Path(fusedlr._C.__file__)) == []


def test_a_leak_is_reported(tmp_path):
    """A shared inline helper built with AVX-512 and kept by the linker is what it catches."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    src = tmp_path / "leak.cpp"
    src.write_text(
        "inline float helper(const float* x) { float s = 0; "
        "for (int i = 0; i < 64; ++i) s += x[i] * x[i]; return s; }\n"
        '#pragma GCC target("avx512f")\n'
        "float wide(const float* x) { return helper(x); }\n"
        "namespace fusedlr { namespace isa_avx512 { float ok(const float* x) { "
        "float s = 0; for (int i = 0; i < 64; ++i) s += x[i]; return s; } } }\n"
        "float (*keep)(const float*) = &helper;\n"
    )
    lib = tmp_path / "libleak.so"
    import subprocess

    subprocess.run(["g++", "-O3", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    leaks = _checker().leaks(lib)
    assert "wide(float const*)" in leaks
    assert not any("isa_avx512" in f for f in leaks)
