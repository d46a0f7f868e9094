"""`pipe-rules status` counts from queue tokens agree with reading every state file."""

from __future__ import annotations

import json

from conftest import pipe_rules_cli

from pipe_rules.execution.worker import run_worker
from pipe_rules.reporting.status import run_status
from pipe_rules.store.lifecycle import cancel, claim_and_start, finish
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState


def test_fast_counts_match_exact_counts_in_every_state(staged_run):
    layout = staged_run(8)
    run_worker(layout.root, max_tasks=3, install_signals=False)  # 3 COMPLETED
    pending = [t for t in manifest_task_ids(layout) if layout.pending_token("shard-000", t).exists()
               or layout.pending_token("shard-001", t).exists()]
    for task_id, outcome in zip(pending[:2], (TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL)):
        layout.pending_token("shard-000", task_id).unlink(missing_ok=True)
        layout.pending_token("shard-001", task_id).unlink(missing_ok=True)
        claim = claim_and_start(layout, task_id, "flock", "w", 60)
        finish(layout, claim, "flock", outcome, "ess", "injected")
    cancel(layout, pending[2], "flock")
    claim_and_start(layout, pending[3], "flock", "w", 60)  # RUNNING (its token taken by hand below)
    layout.pending_token("shard-000", pending[3]).unlink(missing_ok=True)
    layout.pending_token("shard-001", pending[3]).unlink(missing_ok=True)
    fast, exact = run_status(layout), run_status(layout, exact=True)
    assert not fast.exact and exact.exact
    expected = {"COMPLETED": 3, "FAILED_ESS": 1, "FAILED_TERMINAL": 1, "CANCELLED": 1, "RUNNING": 1, "PENDING": 1}
    assert {k: v for k, v in fast.counts.items() if v} == expected
    assert fast.counts == exact.counts and fast.run_state == exact.run_state == "RUNNING"


def test_status_json_shape(staged_run):
    layout = staged_run(2)
    out = json.loads(pipe_rules_cli("status", str(layout.root), "--json", check=True).stdout)
    assert out["run_state"] == "STAGED"
    assert out["tasks"]["PENDING"] == 2 and set(out["tasks"]) == {s.value for s in TaskState}
