#!/usr/bin/env bash
# Runs fusedlr's test suite against several torch versions: for each, a venv of its own, a copy
# of this working tree (so the builds, one _C.so per torch, do not clash), README's install
# commands with that torch and a CPU-only build (FUSEDLR_CUDA=0), then the suite. Prints one
# summary line per version (pytest's counts, or the step that failed) and exits non-zero if any
# version did not pass.
#
#   tools/torch_matrix.sh                 # the versions in VERSIONS below
#   tools/torch_matrix.sh 2.11.0 2.15.0   # these
#
# Environment:
#   MATRIX_DIR   venvs, tree copies and logs (default ${TMPDIR:-/tmp}/fusedlr-torch-matrix); kept
#                between runs: a second run reuses the venv and rebuilds only what changed
#   PYTHON       the interpreter the venvs are made from (default python3)
#   EXTRAS       fusedlr extras to install (default test,integrations,peers, as README's test
#                command; "test" alone is quicker: the integration and peer tests then skip)
#   PYTEST_ARGS  default "-q tests"
#   MAX_JOBS     compile jobs (default 1)
#
# Versions run one after another: the suite peaks at about 11 GB of memory, so two runs of this
# script at once on a 24 GiB machine get one killed (seen: exit 137).
#
# Needs PyPI (the Linux torch wheels pull the CUDA libraries: a few GB per version, cached by
# pip). A pip constraints file given in PIP_CONSTRAINT or pip's config (some machines cap torch)
# is replaced, for these installs, by one that pins the version under test.
set -uo pipefail
VERSIONS=(2.11.0 2.14.1 2.15.0)
[ $# -gt 0 ] && VERSIONS=("$@")

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MATRIX_DIR="${MATRIX_DIR:-${TMPDIR:-/tmp}/fusedlr-torch-matrix}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${EXTRAS:-test,integrations,peers}"
PYTEST_ARGS="${PYTEST_ARGS:--q tests}"
export MAX_JOBS="${MAX_JOBS:-1}" FUSEDLR_CUDA=0 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$MATRIX_DIR"

summary=()
status=0
for v in "${VERSIONS[@]}"; do
  venv="$MATRIX_DIR/venv-$v" src="$MATRIX_DIR/src-$v" log="$MATRIX_DIR/torch-$v.log"
  echo "== torch $v: $venv, log $log"
  start=$(date +%s)
  : > "$log"
  result=""
  # A copy of the working tree (tracked and untracked, not ignored), over the last copy so the
  # build directory is reused.
  mkdir -p "$src"
  (cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$src" -xf -
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv" >> "$log" 2>&1 || result="venv failed"
  printf 'torch==%s\n' "$v" > "$MATRIX_DIR/constraints-$v.txt"
  export PIP_CONSTRAINT="$MATRIX_DIR/constraints-$v.txt"
  if [ -z "$result" ]; then
    # README's install commands, with this torch (and FUSEDLR_CUDA=0, exported above).
    (cd "$src" && PATH="$venv/bin:$PATH" &&
      pip install "setuptools>=70.1" "torch==$v" ninja ruff clang-format &&
      pip install --no-build-isolation -e ".[$EXTRAS]") >> "$log" 2>&1 || result="install/build failed"
  fi
  if [ -z "$result" ]; then
    # From the copy: run elsewhere, `python -m` would find this tree's fusedlr first.
    (cd "$src" && "$venv/bin/python" -m fusedlr info) 2>&1 | tr -s ' ' | paste -sd ';' - \
      | tee -a "$log"
    # shellcheck disable=SC2086
    (cd "$src" && PATH="$venv/bin:$PATH" python -m pytest $PYTEST_ARGS) >> "$log" 2>&1
    rc=$?
    result=$(grep -E '^=*\s*[0-9]+ (passed|failed|error)|(passed|failed|errors?|skipped).* in [0-9.]+s' \
      "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
    [ -n "$result" ] || result="pytest exited $rc without a summary"
    [ "$rc" -eq 0 ] || status=1
  else
    status=1
  fi
  line="torch $v: $result ($(( $(date +%s) - start )) s)"
  echo "$line"
  summary+=("$line")
done
unset PIP_CONSTRAINT

echo "== summary (commit $(git -C "$ROOT" describe --always --dirty), $(uname -m), $(nproc) cores, \
$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//'), EXTRAS=$EXTRAS)"
printf '%s\n' "${summary[@]}"
exit $status
