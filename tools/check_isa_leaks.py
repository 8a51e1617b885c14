"""Finds code compiled for a wider vector ISA that a baseline x86-64 caller could reach.

The CPU kernels are compiled three times (isa_default/avx2/avx512.cpp) under
``#pragma GCC target``. An inline function or template defined in a shared header and
instantiated in an AVX2/AVX-512 translation unit is a weak symbol; the linker keeps one
copy for the whole extension, and if it keeps the wide one, a CPU without that ISA
executes AVX-512 code from the default path and dies with SIGILL.

This script disassembles the extension and lists every function that uses AVX
(VEX/EVEX: ymm/zmm/mask registers or ``v``-prefixed instructions) but is not in a
namespace that only the matching kernel table reaches. Exit status 1 when any exist.

    python tools/check_isa_leaks.py [path/to/_C.so]
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

# Functions allowed to contain AVX code: reached only through the AVX2/AVX-512 kernel tables.
_ALLOWED = re.compile(r"fusedlr::isa_avx(2|512)::|at::vec::AVX(2|512)::|fusedlr::kernel_table_avx")
_FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")
_AVX_OPERAND = re.compile(r"%[yz]mm\d+|%k[0-7]\b")
# A v-prefixed mnemonic is a VEX/EVEX instruction (SSE forms have no v prefix).
_AVX_MNEMONIC = re.compile(r"^\s*[0-9a-f]+:\s+v[a-z0-9]+\s")


def avx_functions(library: Path) -> list[str]:
    """Names of functions in `library` that contain AVX instructions."""
    out = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", str(library)],
        check=True, capture_output=True, text=True,
    ).stdout
    found, current, seen = [], None, set()
    for line in out.splitlines():
        m = _FUNC.match(line)
        if m:
            current = m.group(1)
            continue
        if current is None or current in seen:
            continue
        if _AVX_MNEMONIC.match(line) or _AVX_OPERAND.search(line):
            found.append(current)
            seen.add(current)
    return found


def leaks(library: Path) -> list[str]:
    """AVX functions outside the ISA namespaces (candidates for a SIGILL on older CPUs)."""
    return [f for f in avx_functions(library) if not _ALLOWED.search(f)]


def main(argv: list[str]) -> int:
    if shutil.which("objdump") is None:
        print("objdump not found (binutils)", file=sys.stderr)
        return 2
    if argv:
        library = Path(argv[0])
    else:
        import fusedlr._C

        library = Path(fusedlr._C.__file__)
    bad = leaks(library)
    for name in bad:
        print(name)
    print(f"{len(bad)} function(s) with AVX code outside the ISA namespaces in {library.name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
