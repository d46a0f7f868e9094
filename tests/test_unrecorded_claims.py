"""A first attempt's claim writes no state version (issue 13: 2 metadata calls and an inode fewer
per task): the moved token and the attempt folder it creates are the claim until the worker's
first heartbeat or its end. These tests pin what everyone else then does with a task that is
PENDING behind an in-flight token: count it as running, leave it alone for a lease, then salvage
or orphan the attempt its claimer began; and what the claimer does when it cannot write its end."""

from __future__ import annotations

import json
import os
import time

import pytest

from pipe_rules.contracts.errors import OwnershipLost
from pipe_rules.execution.worker import _Watch, run_worker
from pipe_rules.reporting.status import run_status
from pipe_rules.store.claims import TaskPicker
from pipe_rules.store.lifecycle import cancel, claim_and_start, finish
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TaskState as S
from pipe_rules.store.stranded import hand_back_unrecorded
from pipe_rules.store.taskstate import read_state

SHARD = "shard-000"
LEASE_S = 30.0


def _claimed(staged_run):
    """One task, claimed by worker A through the drain path (token moved, folder made), nothing written."""
    layout = staged_run(1, shards=1, lease_s=LEASE_S, clock_skew_s=0)
    task_id = manifest_task_ids(layout)[0]
    claim = TaskPicker(layout, SHARD, read_run(layout).lock_mode, "A", LEASE_S).next_claim()
    assert claim is not None and layout.attempt_dir(claim.task_id, claim.attempt_index).is_dir()
    return layout, task_id, claim


def _later(monkeypatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)


def test_a_claim_is_its_folder_and_token_and_status_counts_it_running(staged_run):
    layout, task_id, _ = _claimed(staged_run)
    names = sorted(os.listdir(layout.task_dir(task_id)))
    assert names == ["attempts", "spec.json", "state.1.json"] and os.listdir(layout.attempts_dir(task_id)) == ["0"]
    assert layout.inflight_token(task_id).exists() and read_state(layout, task_id).status is S.PENDING
    for exact in (False, True):
        counts = run_status(layout, exact=exact).counts
        assert (counts["RUNNING"], counts["PENDING"]) == (1, 0), (exact, counts)
    report = reconcile(layout)  # a young token: a live claim as far as anyone can tell
    assert report.counts["RUNNING"] == 1 and report.orphaned == report.salvaged == []
    assert read_state(layout, task_id).status is S.PENDING and layout.inflight_token(task_id).exists()


def test_a_claim_of_a_task_cancelled_just_before_runs_nothing(staged_run):
    """The claimer moved the token just as a cancel committed version 2. The claim looks for version
    2 before it makes the attempt folder: no folder, no claim, the task stays CANCELLED."""
    layout = staged_run(1, shards=1)
    task_id = manifest_task_ids(layout)[0]
    mode = read_run(layout).lock_mode
    os.rename(layout.pending_token(SHARD, task_id), layout.inflight_token(task_id))
    assert cancel(layout, task_id, mode)  # moves the in-flight token to ended/CANCELLED
    assert claim_and_start(layout, task_id, mode, "A", LEASE_S, inflight_placed=True) is None
    assert os.listdir(layout.attempts_dir(task_id)) == [] and read_state(layout, task_id).status is S.CANCELLED
    assert not layout.inflight_token(task_id).exists()


def test_a_lingering_worker_waits_a_whole_lease_before_it_takes_over(staged_run, monkeypatch):
    """The watch times a PENDING-behind-token task from when it first saw it: a live claimer has a
    lease to write its claim down (its first heartbeat comes after heartbeat_s < lease_s)."""
    layout, task_id, _ = _claimed(staged_run)
    run, watch = read_run(layout), _Watch()
    assert watch.expired(layout, run, [task_id]) == []
    _later(monkeypatch, LEASE_S - 1)
    assert watch.expired(layout, run, [task_id]) == []
    monkeypatch.undo()
    _later(monkeypatch, LEASE_S + 1)
    assert watch.expired(layout, run, [task_id]) == [task_id]


@pytest.mark.parametrize("left_result", [True, False], ids=["result-left", "no-result"])
def test_reconcile_settles_a_claim_whose_token_is_a_lease_old(staged_run, monkeypatch, left_result):
    """The claimer died (or froze) before writing anything. A lease after its token moved, reconcile
    completes the task from a COMPLETED result it left, or orphans attempt 0 and re-queues the task
    at attempt 1; the claimer, should it wake, owns nothing."""
    layout, task_id, claim = _claimed(staged_run)
    if left_result:
        layout.result(task_id, 0).write_text(json.dumps({"status": "COMPLETED"}))
    _later(monkeypatch, LEASE_S + 1)
    report = reconcile(layout)
    monkeypatch.undo()
    state = read_state(layout, task_id)
    assert not layout.inflight_token(task_id).exists()
    if left_result:
        assert report.salvaged == [task_id] and state.status is S.COMPLETED and state.salvaged
        assert [h["to"] for h in state.history] == ["CLAIMED", "RUNNING", "COMPLETED"]
    else:
        assert (state.status, state.attempt_index) == (S.PENDING, 1)
        assert [h["to"] for h in state.history] == ["CLAIMED", "RUNNING", "ORPHANED", "PENDING"]
        assert "attempt 0 was begun by a worker that never recorded its claim" in state.failure_reason
        assert layout.pending_token(SHARD, task_id).exists()
        assert run_worker(layout.root, install_signals=False, linger=False).completed == 1
        assert sorted(os.listdir(layout.attempts_dir(task_id))) == ["0", "1"]
    with pytest.raises(OwnershipLost):
        finish(layout, claim, read_run(layout).lock_mode, S.COMPLETED)
    assert read_state(layout, task_id).status is S.COMPLETED


def test_a_claim_whose_end_cannot_be_written_goes_back_to_the_queue_as_staged(staged_run):
    """Disk full at the finish: nothing of the claim was written, so the worker removes its empty
    attempt folder and moves the token back; the next worker claims attempt 0 at once."""
    layout, task_id, claim = _claimed(staged_run)
    assert hand_back_unrecorded(layout, claim)
    assert os.listdir(layout.attempts_dir(task_id)) == [] and layout.pending_token(SHARD, task_id).exists()
    again = TaskPicker(layout, SHARD, read_run(layout).lock_mode, "B", LEASE_S).next_claim()
    assert again is not None and again.attempt_index == 0


def test_a_claim_hands_back_nothing_once_its_result_or_a_version_is_written(staged_run):
    layout, task_id, claim = _claimed(staged_run)
    layout.result(task_id, 0).write_text(json.dumps({"status": "COMPLETED"}))
    assert not hand_back_unrecorded(layout, claim)  # a result to salvage stays
    layout.result(task_id, 0).unlink()
    assert cancel(layout, task_id, read_run(layout).lock_mode)
    assert not hand_back_unrecorded(layout, claim)  # version 2 exists: the task is not ours to requeue
    assert read_state(layout, task_id).status is S.CANCELLED and os.listdir(layout.attempts_dir(task_id)) == ["0"]
