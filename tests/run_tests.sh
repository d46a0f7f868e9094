#!/usr/bin/env bash
# Test entry point (`make test`, and so CI): start the real schedulers the integration tests use,
# then run pytest. A scheduler that cannot start is reported here and its tests skip with that
# reason (shown by `pytest -ra`), never silently.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

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
# the layering of pipe_rules/ (contract in pyproject.toml): a broken layer fails before any test runs
"$(dirname "$PY")/lint-imports" --no-cache || exit 1
exec "$PY" -m pytest -ra "$@"
