#!/usr/bin/env bash
# Test entry point, in CI's order: format, lint, import contract, tests.
#   make test  (CI, .ci/run): the three checks, then the real schedulers are started and every test runs.
#   make check (CHECK=1):     the three checks and the fast tests only (-m "not slow": no whole
#                             Snakemake campaigns, real SLURM/SGE, benchmarks or storms), about a minute,
#                             in two processes (PYTEST_WORKERS=0: in this one).
# A scheduler that cannot start is reported here and its tests skip with that reason (shown by
# `pytest -ra`), never silently. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")

step() {  # step <title> <command...>: stop at the first check that fails
  echo "== $1"
  shift
  "$@" || { echo "FAILED: $*"; exit 1; }
}

LINT_TEST=tests/test_workflow_lint.py::test_snakemake_lint_is_clean  # what --lint may say is decided there

step "format: snakefmt --check workflow/" "$BIN/snakefmt" --check workflow
step "format: ruff check (pyflakes: undefined names, unused imports)" "$BIN/ruff" check --quiet pipe_rules tests scripts benchmarks
step "lint: snakemake --lint" "$PY" -m pytest -q -p no:cacheprovider "$LINT_TEST"
# the layering of pipe_rules/ (contract in pyproject.toml): a broken layer fails before any test runs
step "import contract: lint-imports" "$BIN/lint-imports" --no-cache
# The fast tests run in PYTEST_WORKERS processes (pytest-xdist; each test has its own tmp_path, run
# folders and XDG_CONFIG_HOME). The shared-filesystem tests (marker sharedfs) and the slow ones share
# the real schedulers' daemons and the GlusterFS/sshfs mounts, and time claims, leases and kills: they
# run in one process, after the others.
PARALLEL=(-n "${PYTEST_WORKERS:-2}" --dist worksteal)
run_pytest() {  # pytest with the lint test deselected; exit 5 (nothing selected) counts as passed
  "$PY" -m pytest -ra --deselect "$LINT_TEST" "$@"
  local rc=$?
  [ $rc = 5 ] && rc=0
  return $rc
}
finish() {  # finish <exit of the parallel part> <exit of the one-process part>
  [ "$1" = 0 ] && [ "$2" = 0 ] && exit 0
  echo "FAILED: tests in ${PYTEST_WORKERS:-2} processes exit $1, tests in one process exit $2"
  exit 1
}
if [ "${CHECK:-0}" = 1 ]; then
  echo "== tests: the fast set (pytest -m 'not slow'), ${PYTEST_WORKERS:-2} processes, then its shared-filesystem tests in one"
  run_pytest -m "not slow and not sharedfs" "${PARALLEL[@]}" "$@"
  parallel=$?
  run_pytest -m "sharedfs and not slow" "$@"
  finish $parallel $?
fi

start() {  # start <name> <script> <env var that carries the reason to the tests>
  local log="/tmp/pipe_rules_$1_start.log"
  if "$2" > "$log" 2>&1; then
    tail -n 1 "$log"
  else
    echo "$1 could not be started; its integration tests will skip. Last lines of $log:"
    tail -n 5 "$log"
    export "$3=$(tail -n 1 "$log")"
  fi
}

# strace: the benchmark smoke test counts file-system metadata calls per task with it
if ! command -v strace > /dev/null; then
  { apt-get update -qq && apt-get install -y -qq strace > /dev/null; } || echo "strace could not be installed"
fi
start slurm tests/cluster/start_slurm.sh PIPE_RULES_SLURM_UNAVAILABLE
[ -x tests/cluster/start_sge.sh ] && start sge tests/cluster/start_sge.sh PIPE_RULES_SGE_UNAVAILABLE
# two client mounts each of a GlusterFS volume and an sshfs folder (tests/test_sharedfs.py)
start sharedfs tests/cluster/start_sharedfs.sh PIPE_RULES_SHAREDFS_UNAVAILABLE
if [ $# -gt 0 ]; then  # tests named on the command line: as given, one process
  echo "== tests: $*"
  exec "$PY" -m pytest -ra --deselect "$LINT_TEST" "$@"
fi
echo "== tests: the fast set without the shared-filesystem tests, ${PYTEST_WORKERS:-2} processes"
run_pytest -m "not slow and not sharedfs" "${PARALLEL[@]}"
parallel=$?
echo "== tests: the slow and the shared-filesystem tests, one process"
run_pytest -m "slow or sharedfs"
finish $parallel $?
