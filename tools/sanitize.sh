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
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-/tmp/fusedlr-asan}"
shift || true
[ "${1:-}" = "--" ] && shift
pytest_args=("$@")
[ ${#pytest_args[@]} -eq 0 ] && pytest_args=(-q -m "not slow" tests)

mkdir -p "$build"
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
