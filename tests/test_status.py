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


def _mixed_by_hand(layout):
    """3 COMPLETED by a worker (ledger lines), FAILED_ESS, FAILED_TERMINAL, CANCELLED and RUNNING by
    hand (no ledger lines: their tokens and markers tell), the rest PENDING."""
    run_worker(layout.root, max_tasks=3, install_signals=False)
    pending = [t for t in manifest_task_ids(layout) if layout.pending_token("shard-000", t).exists()
               or layout.pending_token("shard-001", t).exists()]
    for task_id, outcome in zip(pending[:2], (TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL)):
        for shard in ("shard-000", "shard-001"):
            layout.pending_token(shard, task_id).unlink(missing_ok=True)
        finish(layout, claim_and_start(layout, task_id, "flock", "w", 60), "flock", outcome, "ess", "injected")
    cancel(layout, pending[2], "flock")
    claim_and_start(layout, pending[3], "flock", "w", 60)
    for shard in ("shard-000", "shard-001"):
        layout.pending_token(shard, pending[3]).unlink(missing_ok=True)
    return pending


def test_ledger_counts_never_list_pending_tokens_and_match_the_states(staged_run, monkeypatch):
    import pipe_rules.reporting.status as status

    layout = staged_run(10)
    _mixed_by_hand(layout)
    listed = []
    real = status._file_names
    monkeypatch.setattr(status, "_file_names", lambda folder, depth: listed.append(folder) or real(folder, depth))
    monkeypatch.setattr(status, "LIST_PENDING_BELOW", 0)  # the ledger path even for 3 pending tasks
    fast = run_status(layout, owners=True)
    assert listed and not any(layout.pending_dir in (f, *f.parents) for f in listed)
    exact = run_status(layout, exact=True, owners=True)
    expected = {"COMPLETED": 3, "FAILED_ESS": 1, "FAILED_TERMINAL": 1, "CANCELLED": 1, "RUNNING": 1, "PENDING": 3}
    assert {k: v for k, v in fast.counts.items() if v} == expected
    assert fast.counts == exact.counts and fast.run_state == exact.run_state == "RUNNING"
    assert fast.as_json()["owners"] == exact.as_json()["owners"]


def test_a_completion_without_its_ledger_line_is_counted_once_few_tasks_are_pending(staged_run, monkeypatch):
    """A worker killed between result.json and its ledger line, salvaged COMPLETED: the ledgers
    cannot know; once at most LIST_PENDING_BELOW are pending the tokens are listed and it counts."""
    import pipe_rules.reporting.status as status

    layout = staged_run(6)
    run_worker(layout.root, max_tasks=2, install_signals=False)
    task_id = next(t for t in manifest_task_ids(layout) if layout.pending_token("shard-000", t).exists()
                   or layout.pending_token("shard-001", t).exists())
    for shard in ("shard-000", "shard-001"):
        layout.pending_token(shard, task_id).unlink(missing_ok=True)
    finish(layout, claim_and_start(layout, task_id, "flock", "w", 60), "flock", TaskState.COMPLETED, None, None)
    assert run_status(layout).counts["COMPLETED"] == 3 == run_status(layout, exact=True).counts["COMPLETED"]
    monkeypatch.setattr(status, "LIST_PENDING_BELOW", 0)
    assert run_status(layout).counts["COMPLETED"] == 2  # the documented approximation while many are pending
