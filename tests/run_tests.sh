#!/usr/bin/env bash
# Test entry point (`make test`, and so CI): start the real schedulers the integration tests use,
# then run pytest. A scheduler that cannot start is reported and its tests skip with that reason.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if [ -x tests/cluster/start_slurm.sh ]; then
  if tests/cluster/start_slurm.sh > /tmp/pipe_rules_slurm_start.log 2>&1; then
    tail -n 1 /tmp/pipe_rules_slurm_start.log
  else
    echo "SLURM could not be started (integration tests will skip); log:"; tail -n 20 /tmp/pipe_rules_slurm_start.log
    export PIPE_RULES_SLURM_UNAVAILABLE="$(tail -n 1 /tmp/pipe_rules_slurm_start.log)"
  fi
fi
exec "$PY" -m pytest -ra "$@"
