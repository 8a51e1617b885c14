#!/usr/bin/env bash
# AddressSanitizer + UBSan run of the CPU extension under the test suite.
#
#   bash tools/sanitize.sh [BUILD_DIR] [-- PYTEST_ARGS...]
#
# Copies the working tree (tracked and untracked, not ignored, files) to BUILD_DIR (default
# /tmp/fusedlr-asan), builds fusedlr._C there in place with FUSEDLR_SANITIZE=1 FUSEDLR_CUDA=0
# (never pip install: the editable install of the repo stays untouched), then runs pytest there
# with libasan preloaded (python itself is not instrumented). Any ASan report aborts the test
# process; any UBSan "runtime error" fails the script. Tests marked slow are deselected (the
# 8 GiB large-index step is too much for ASan's shadow memory on this machine).
#
# First, the host C++ tests of the CUDA path (tests/cpp/*.cpp: the launch plan, and the device's
# vector loads / stores and __half / __nv_bfloat16 conversions compiled for the host with
# FUSEDLR_HOST_VECTOR_PATH) are built with -fsanitize=address,undefined,alignment (every report
# fatal) and run; vector_test needs the CUDA toolkit's headers (CUDA_HOME, or nvcc's root) and is
# skipped with a message without them. SANITIZE_HOST_ONLY=1 stops after this phase.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-/tmp/fusedlr-asan}"
shift || true
[ "${1:-}" = "--" ] && shift
pytest_args=("$@")
[ ${#pytest_args[@]} -eq 0 ] && pytest_args=(-q -m "not slow" tests)

mkdir -p "$build"

# Host C++ tests (no torch): built from the repo, binaries in $build/host-tests.
host="$build/host-tests"
mkdir -p "$host"
cuda_inc=""
cuda_root="${CUDA_HOME:-}"
if [ -z "$cuda_root" ] && command -v nvcc > /dev/null; then
  : > "$host/probe.cu"
  cuda_root="$(nvcc --dryrun -v -c "$host/probe.cu" -o "$host/probe.o" 2>&1 \
    | sed -n 's/^#\$ TOP=//p' | head -1)"
fi
[ -n "$cuda_root" ] && [ -f "$cuda_root/include/cuda_fp16.h" ] && cuda_inc="$cuda_root/include"
san=(-std=c++17 -O1 -g -fsanitize=address,undefined,alignment -fno-sanitize-recover=all
  -fno-omit-frame-pointer -I"$repo/csrc/include" -I"$repo/csrc")
for src in "$repo"/tests/cpp/*.cpp; do
  name="$(basename "$src" .cpp)"
  flags=()
  if [ "$name" = vector_test ]; then
    if [ -z "$cuda_inc" ]; then
      echo "host test $name: skipped (no CUDA toolkit headers: set CUDA_HOME)"; continue
    fi
    flags=(-DFUSEDLR_HOST_VECTOR_PATH -I"$cuda_inc")
  fi
  g++ "${san[@]}" "${flags[@]}" "$src" -o "$host/$name" 2> "$host/$name.build.log" \
    || { tail -30 "$host/$name.build.log"; exit 1; }
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
    "$host/$name" > "$host/$name.log" 2>&1 || { tail -30 "$host/$name.log"; exit 1; }
  echo "host test $name: $(tail -1 "$host/$name.log")"
done
[ "${SANITIZE_HOST_ONLY:-0}" = 1 ] && exit 0

(cd "$repo" && git ls-files -co --exclude-standard -z | grep -zv '\.so$' \
  | tar --null -T - -cf - | tar -xf - -C "$build")
cd "$build"
FUSEDLR_CUDA=0 FUSEDLR_SANITIZE=1 MAX_JOBS="${MAX_JOBS:-2}" \
  python setup.py build_ext --inplace > sanitize-build.log 2>&1 \
  || { tail -50 sanitize-build.log; exit 1; }
echo "build ok: $build/sanitize-build.log ($(grep -c 'warning:' sanitize-build.log) warnings," \
  "$(grep -E "^$build/csrc[^:]*:[0-9]+:[0-9]+: warning" sanitize-build.log | wc -l) in csrc/)"
[ "${SANITIZE_BUILD_ONLY:-0}" = 1 ] && exit 0

# libstdc++ is preloaded too: python does not link it, and without it ASan cannot intercept
# __cxa_throw (any C++ exception, e.g. a TORCH_CHECK, would abort the process).
asan="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
log="$build/sanitize-pytest.log"
set +e
PYTHONPATH="$build" LD_PRELOAD="$asan" \
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" \
  python -c "import fusedlr, sys; assert fusedlr.__file__.startswith('$build'), fusedlr.__file__" \
  && PYTHONPATH="$build" LD_PRELOAD="$asan" \
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" \
  python -m pytest -p no:cacheprovider "${pytest_args[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if grep -qE "ERROR: AddressSanitizer|runtime error:" "$log"; then
  echo "sanitize: sanitizer reports in $log"; exit 1
fi
echo "sanitize: pytest exit code $rc, no sanitizer report (log: $log)"
exit "$rc"
