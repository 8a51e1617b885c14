#!/usr/bin/env bash
# fusedlr: one-shot check on a machine with one NVIDIA GPU, the preinstalled torch and nvcc and
# no internet (the device machine: one H200, torch 2.11.0+cu130, Python 3.12, nvcc 13.0).
#
#   bash tools/gpu_check.sh [--dry-run] [--reuse-build]
#
# Phases, each under its own time cap (CAP_<PHASE> seconds, below), none started past DEADLINE
# seconds (default 530: the whole script stays under 9 minutes):
#   build     python setup.py build_ext --inplace, for this GPU's arch only
#             (TORCH_CUDA_ARCH_LIST from torch.cuda.get_device_capability()), ptxas -v report
#   tests     every CUDA test of tests/ (skipped without CUDA: tools/gpu_pytest_select.py)
#   extra     tools/gpu_extra.py: GPU against CPU kernels, sync / allocation checks, GradScaler,
#             found_inf in a CUDA graph, launches and time per step, torch.compile
#   memcheck  compute-sanitizer --tool memcheck on tools/gpu_small_step.py
#   bench     benchmarks/bench_step.py against torch fused + CosineAnnealingLR
# Every check prints PASS / FAIL / SKIP lines; the summary (stdout and $OUT/summary.txt) lists
# them, and the exit status is 1 if any failed (2: bad usage, 3: no GPU to check).
#
# --dry-run: on any machine (no GPU needed) probes the environment, checks the helper scripts and
# prints each phase's command and cap without building or running anything.
# --reuse-build: skip the build when fusedlr/_C already has CUDA kernels (a rerun on a warm
# machine keeps the ignored build output).
#
# Results: at most 8 files in $OUT (default: a fresh folder under /tmp): env.log, build.log,
# tests.log, extra.log, sanitizer.log, bench.log, bench.json, summary.txt.
# With the device tool: run(command="bash tools/gpu_check.sh", timeout_s=600).
set -uo pipefail

DRY=0
REUSE=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --reuse-build) REUSE=1 ;;
    -h | --help)
      sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "gpu_check.sh: unknown argument '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${REPO:-$TOOLS/..}" && pwd)" || exit 2
cd "$REPO" || exit 2
PY="${PY:-python3}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}"
mkdir -p "$OUT" || exit 2
DEADLINE="${DEADLINE:-530}"
CAP_BUILD="${CAP_BUILD:-330}"
CAP_TESTS="${CAP_TESTS:-150}"
CAP_EXTRA="${CAP_EXTRA:-150}"
CAP_MEMCHECK="${CAP_MEMCHECK:-100}"
CAP_BENCH="${CAP_BENCH:-120}"
MIN_PHASE=20 # seconds: a phase with less time left is not started
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 CUDA_MODULE_LOADING=LAZY
T0=$(date +%s)
RESULTS=()

elapsed() { echo $(($(date +%s) - T0)); }
log() { echo "[$(elapsed)s] $*"; }
# result STATUS NAME [DETAIL...]: one summary line (STATUS: PASS, FAIL or SKIP).
result() {
  local line="$*"
  RESULTS+=("$line")
  echo "$line"
}

# phase NAME CAP LOGFILE CMD...: runs CMD (output appended to LOGFILE, its tail shown) for at
# most min(CAP, time left before DEADLINE) seconds. Returns CMD's status; 124: timed out;
# 99: not started (too little time left); 98: dry run (CMD printed, not run).
phase() {
  local name=$1 cap=$2 logf=$3
  shift 3
  local left=$((DEADLINE - $(elapsed)))
  local t=$((cap < left ? cap : left))
  if [ "$DRY" = 1 ]; then
    echo "  [$name] cap ${cap}s, log $(basename "$logf"):$(printf ' %q' "$@")"
    return 98
  fi
  if [ "$t" -lt "$MIN_PHASE" ]; then
    log "== $name not started: ${left}s left before the ${DEADLINE}s deadline"
    return 99
  fi
  log "== $name (cap ${t}s)"
  echo "### [$(elapsed)s] $name: $*" >>"$logf"
  timeout --kill-after=10 "$t" "$@" >>"$logf" 2>&1
  local rc=$?
  tail -n "${TAIL:-15}" "$logf" | cut -c1-300
  log "== $name rc=$rc$([ $rc -eq 124 ] && echo " (timed out after ${t}s)")"
  return $rc
}

# Status of a phase that was run: PASS/FAIL NAME DETAIL, or SKIP when it did not run.
phase_result() {
  local rc=$1 name=$2 detail=$3
  case $rc in
    0) result PASS "$name" "$detail" ;;
    98) ;;
    99) result SKIP "$name" "(not started: out of time)" ;;
    124 | 137) result FAIL "$name" "(timed out) $detail" ;;
    *) result FAIL "$name" "(rc=$rc) $detail" ;;
  esac
}

first_of() { for c in "$@"; do [ -n "$c" ] && [ -x "$c" ] && echo "$c" && return 0; done; }

# ---- 0. environment --------------------------------------------------------------------------
PROBE='import sys, torch
ok = torch.cuda.is_available()
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu", torch.cuda.get_device_name() if ok else "none", flush=True)
print("arch", "%d.%d" % torch.cuda.get_device_capability() if ok else "none")'
NVCC="$(first_of "$(command -v nvcc)" "${CUDA_HOME:-/nonexistent}/bin/nvcc" /usr/local/cuda/bin/nvcc)"
SAN="$(first_of "$(command -v compute-sanitizer)" "${NVCC%/nvcc}/compute-sanitizer" \
  /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer)"
{
  date -u
  echo "repo $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
  else
    echo "nvidia-smi: not found"
  fi
  $PY -c "$PROBE" 2>&1 || echo "torch: import failed"
  echo "nvcc: ${NVCC:-not found}"
  [ -n "$NVCC" ] && "$NVCC" --version | tail -2
  echo "compute-sanitizer: ${SAN:-not found}"
  echo "cores: $(nproc)"
  free -g 2>/dev/null | head -2
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"
ARCH="$(sed -n 's/^arch //p' "$OUT/env.log" | tail -1)"
[ -n "$ARCH" ] || ARCH=none

if [ "$DRY" = 1 ]; then
  echo "== dry run: nothing is built or run; OUT=$OUT"
  echo "  arch list for the build: ${ARCH/none/(none: no CUDA device visible to torch)}"
  # the helpers import (fusedlr as built here) and answer --list
  for cmd in "$TOOLS/gpu_extra.py --list" "benchmarks/bench_step.py --list" \
    "-m py_compile $TOOLS/gpu_small_step.py"; do
    # shellcheck disable=SC2086 # (word splitting of cmd intended)
    if $PY $cmd >>"$OUT/env.log" 2>&1; then
      result PASS dry_run_helper "python ${cmd#"$REPO"/}"
    else
      result FAIL dry_run_helper "python ${cmd#"$REPO"/} failed (see env.log)"
    fi
  done
  ARCH="<capability>"
fi
if [ "$DRY" = 0 ] && [ "$ARCH" = none ]; then
  echo "gpu_check.sh: no CUDA device visible to torch on this machine (see above): nothing to"
  echo "check. This script is for the GPU machine; 'bash tools/gpu_check.sh --dry-run' checks"
  echo "the script itself anywhere."
  exit 3
fi

# ---- 1. build for this GPU's arch only -------------------------------------------------------
BUILT=0
has_cuda_kernels() { $PY -c "import sys, fusedlr._C as C; sys.exit(0 if C.cuda_compiled() else 1)" 2>/dev/null; }
if [ "$DRY" = 0 ] && [ "$REUSE" = 1 ] && has_cuda_kernels; then
  result SKIP build "(--reuse-build: fusedlr/_C already has CUDA kernels)"
  BUILT=1
else
  [ "$DRY" = 0 ] && rm -f fusedlr/_C*.so
  [ -n "$NVCC" ] && export PATH="${NVCC%/nvcc}:$PATH"
  TAIL=4 phase build "$CAP_BUILD" "$OUT/build.log" \
    env FUSEDLR_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" FUSEDLR_PTXAS_VERBOSE=1 MAX_JOBS="$(nproc)" \
    "$PY" setup.py build_ext --inplace --build-temp "${TMPDIR:-/tmp}/fusedlr-gpu-build"
  rc=$?
  if [ $rc = 0 ] && ! has_cuda_kernels; then rc=1; fi
  # ptxas -v: registers and spills per kernel (the figures of benchmarks/kernels.md)
  PTXAS="$(awk '
    match($0, /Used [0-9]+ registers/) {r = substr($0, RSTART + 5, RLENGTH - 15) + 0; k++; if (r > m) m = r}
    match($0, /[0-9]+ bytes spill stores/) {if (substr($0, RSTART, RLENGTH) + 0 > 0) sp++}
    END {if (k) printf "ptxas: %d kernels, most registers %d, %d with spill stores", k, m, sp}' \
    "$OUT/build.log" 2>/dev/null)"
  phase_result $rc build "TORCH_CUDA_ARCH_LIST=$ARCH; ${PTXAS:-no ptxas report}"
  [ $rc = 0 ] && BUILT=1
  [ "$DRY" = 0 ] && $PY -m fusedlr info >>"$OUT/env.log" 2>&1
fi
# Phases after the build need it: without it they report SKIP, not PASS.
need_build() {
  [ "$DRY" = 1 ] || [ "$BUILT" = 1 ] && return 0
  result SKIP "$1" "(no CUDA build)"
  return 1
}

# ---- 2. the GPU tests: every test of the files that mention CUDA that is skipped without CUDA
#         (tools/gpu_pytest_select.py --cuda-marked) -------------------------------------------
PT=(-q -rfEs -p no:cacheprovider --maxfail=30 -p gpu_pytest_select --cuda-marked)
$PY -c "import pytest_timeout" 2>/dev/null && PT+=(--timeout=120)
mapfile -t TEST_FILES < <(grep -li "cuda" tests/test_*.py 2>/dev/null)
if need_build tests; then
  TAIL=25 phase tests "$CAP_TESTS" "$OUT/tests.log" env PYTHONPATH="$PYTHONPATH:$TOOLS" \
    "$PY" -m pytest "${PT[@]}" "${TEST_FILES[@]}"
  rc=$?
  line="$(grep -E "(passed|failed|error|skipped|deselected|no tests ran)" "$OUT/tests.log" 2>/dev/null |
    tail -1 | cut -c1-200)"
  [ $rc = 0 ] && [[ "$line" != *passed* ]] && rc=1 # all skipped on a GPU machine: a failure
  phase_result $rc tests "${#TEST_FILES[@]} files: $line"
fi

# ---- 3. extra checks ---------------------------------------------------------------------------
if need_build extra; then
  TAIL=3 phase extra "$CAP_EXTRA" "$OUT/extra.log" "$PY" "$TOOLS/gpu_extra.py" --device cuda
  rc=$?
  if [ $rc != 98 ]; then
    lines="$(grep -E "^(PASS|FAIL|SKIP) " "$OUT/extra.log" | cut -c1-400)"
    while IFS= read -r line; do [ -n "$line" ] && result "$line"; done <<<"$lines"
    # a crash or timeout (no FAIL line to show for it), or nothing reported at all
    if [[ $rc != 0 && "$lines" != *FAIL* ]] || [ -z "$lines" ]; then
      [ $rc = 0 ] && rc=1
      phase_result $rc extra "no check failed by itself: see extra.log"
    fi
  fi
fi

# ---- 4. compute-sanitizer memcheck on a small step --------------------------------------------
if need_build memcheck; then
  if [ -z "$SAN" ]; then
    result SKIP memcheck "(compute-sanitizer not found)"
  else
    TAIL=12 phase memcheck "$CAP_MEMCHECK" "$OUT/sanitizer.log" "$SAN" --tool memcheck \
      --error-exitcode 9 --report-api-errors no --print-limit 20 \
      "$PY" "$TOOLS/gpu_small_step.py" --device cuda
    rc=$?
    summary_line="$(grep -E "ERROR SUMMARY" "$OUT/sanitizer.log" 2>/dev/null | tail -1)"
    if [ $rc != 98 ] && grep -q "Device not supported" "$OUT/sanitizer.log"; then
      result SKIP memcheck "(compute-sanitizer: Device not supported on this machine)"
    else
      phase_result $rc memcheck "${summary_line:-no error summary}"
    fi
  fi
fi

# ---- 5. step benchmark: fusedlr against torch fused + CosineAnnealingLR -------------------------
if need_build bench; then
  left=$((DEADLINE - $(elapsed)))
  CASES=large64m,large64m_bf16,small2000x64,small400x256,resnet18
  [ "$DRY" = 0 ] && [ "$left" -lt 150 ] && CASES=large64m,small2000x64
  TAIL=40 phase bench "$CAP_BENCH" "$OUT/bench.log" "$PY" benchmarks/bench_step.py \
    --device cuda --cases "$CASES" --opts sgd,adam,adamw --baselines fused --repeats 8 \
    --sample-ms 10 --warmup-s 0.2 --bw-mib 1024 --json "$OUT/bench.json"
  phase_result $? bench "cases $CASES; figures in bench.log / bench.json"
fi

# ---- summary -----------------------------------------------------------------------------------
{
  echo "== gpu_check summary ($(sed -n 's/^gpu //p' "$OUT/env.log" | head -1), arch $ARCH," \
    "$(elapsed)s)"
  printf '%s\n' "${RESULTS[@]}"
  n_pass=$(printf '%s\n' "${RESULTS[@]}" | grep -c "^PASS ")
  n_fail=$(printf '%s\n' "${RESULTS[@]}" | grep -c "^FAIL ")
  n_skip=$(printf '%s\n' "${RESULTS[@]}" | grep -c "^SKIP ")
  echo "== $n_pass passed, $n_fail failed, $n_skip skipped; logs in $OUT"
} >"$OUT/summary.txt"
echo
cat "$OUT/summary.txt"
if grep -q "^FAIL " "$OUT/summary.txt"; then exit 1; fi
exit 0
