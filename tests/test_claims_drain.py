"""The windows the lock-free drain path opens (issue 13): a first claim makes its attempt folder and
writes no version, and the owning worker commits its heartbeats and its end from memory (the
version its next write builds on), reading nothing. Each race is made to happen at its exact step:
the second actor runs inside the first one's window, between its decision and its exclusive create
(`commit_next`, or the folder's `mkdir`)."""

from __future__ import annotations

import os

import pytest

from pipe_rules.contracts.errors import OwnershipLost
from pipe_rules.store import lifecycle, versioned
from pipe_rules.store.claims import TaskPicker
from pipe_rules.store.lifecycle import cancel, claim_and_start, finish, orphan_if_expired, renew_lease
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TaskState as S
from pipe_rules.store.taskstate import read_state

SHARD = "shard-000"


def _one_task(staged_run):
    layout = staged_run(1, shards=1)
    return layout, manifest_task_ids(layout)[0], read_run(layout).lock_mode


def _inside_commit(monkeypatch, meanwhile):
    """Run `meanwhile()` once, inside the next commit_next of the drain path, before its create."""
    real = lifecycle.commit_next
    ran = []

    def wrapped(layout, task_id, base, record):
        if not ran:
            ran.append(None)  # once: `meanwhile` may itself commit
            ran[0] = meanwhile()
        return real(layout, task_id, base, record)

    monkeypatch.setattr(lifecycle, "commit_next", wrapped)
    return ran


def test_a_cancel_committed_while_the_worker_finishes_from_memory_wins(staged_run, monkeypatch):
    """The worker decided COMPLETED on the version it wrote; a cancel commits before its create. The
    create finds the name taken, the full read sees CANCELLED: the worker owns nothing and writes nothing."""
    layout, task_id, mode = _one_task(staged_run)
    claim = TaskPicker(layout, SHARD, mode, "A", 30.0).next_claim()
    ran = _inside_commit(monkeypatch, lambda: cancel(layout, task_id, mode))
    with pytest.raises(OwnershipLost):
        finish(layout, claim, mode, S.COMPLETED)
    monkeypatch.undo()
    assert ran == [True]
    state = read_state(layout, task_id)
    assert state.status is S.CANCELLED and [h["to"] for h in state.history][-1] == "CANCELLED"
    assert layout.ended_token(S.CANCELLED.value, task_id).exists() and not layout.inflight_token(task_id).exists()


def test_a_cancel_that_read_the_running_version_loses_to_the_finish(staged_run, monkeypatch):
    """The cancel read RUNNING (version 2) and is about to commit version 3; the worker's finish from
    memory takes version 3 first. The cancel's commit fails, it reads again, finds COMPLETED, and
    cancels nothing: one terminal state, the worker's."""
    layout, task_id, mode = _one_task(staged_run)
    claim = TaskPicker(layout, SHARD, mode, "A", 30.0).next_claim()
    real_commit = versioned.commit
    finished = []

    def finish_first(folder, stem, base, data, pretty=False, prune_old=True):
        if not finished:
            finished.append(finish(layout, claim, mode, S.COMPLETED))  # inside the cancel's window
        return real_commit(folder, stem, base, data, pretty, prune_old)

    monkeypatch.setattr(versioned, "commit", finish_first)
    assert cancel(layout, task_id, mode) is False
    monkeypatch.undo()
    assert finished and finished[0].status is S.COMPLETED
    state = read_state(layout, task_id)
    assert state.status is S.COMPLETED and "CANCELLED" not in [h["to"] for h in state.history]
    assert not layout.ended_token(S.CANCELLED.value, task_id).exists()


def test_two_claimers_that_both_read_version_1_never_both_own_the_task(staged_run, monkeypatch):
    """A lingering worker claims a task (stranded behind its in-flight token) while its first claimer,
    which read the same PENDING version 1, is about to make the attempt's folder. Exactly one owns
    it: the folder's maker; the other finds it taken and, not knowing that claimer dead, leaves it."""
    layout, task_id, mode = _one_task(staged_run)
    os.rename(layout.pending_token(SHARD, task_id), layout.inflight_token(task_id))
    real = lifecycle.take_attempt_folder
    other = []

    def b_first(layout_, task, attempt):
        if not other:
            other.append(None)  # once: B's own claim comes through here too
            other[0] = claim_and_start(layout, task_id, mode, "B", 30.0, inflight_placed=True, settle=True)
        return real(layout_, task, attempt)

    monkeypatch.setattr(lifecycle, "take_attempt_folder", b_first)
    mine = claim_and_start(layout, task_id, mode, "A", 30.0, inflight_placed=True)
    monkeypatch.undo()
    assert mine is None and other[0] is not None and other[0].worker_id == "B"
    assert os.listdir(layout.attempts_dir(task_id)) == ["0"] and other[0].attempt_index == 0
    state = finish(layout, other[0], mode, S.COMPLETED)
    assert read_state(layout, task_id).claim_token is None and state.status is S.COMPLETED
    assert [h["to"] for h in state.history] == ["CLAIMED", "RUNNING", "COMPLETED"]  # one claim, not two


def test_a_heartbeat_from_memory_after_the_task_was_orphaned_loses_ownership(staged_run, monkeypatch):
    """The worker stalled; the reconciler orphaned and re-queued the task. The heartbeat's create of
    the next version finds the name taken and the full read raises OwnershipLost (the worker then
    stops its engine); the re-queued version stands, and the worker's finish writes nothing either."""
    layout, task_id, mode = _one_task(staged_run)
    claim = TaskPicker(layout, SHARD, mode, "A", 30.0).next_claim()
    renew_lease(layout, claim, mode, 30.0)  # its first heartbeat writes the claim down (version 2)
    far = read_state(layout, task_id).lease_expires_at + 3600
    assert orphan_if_expired(layout, task_id, mode, far, 0, lambda _attempt: False) is not None
    with pytest.raises(OwnershipLost):
        renew_lease(layout, claim, mode, 30.0)
    with pytest.raises(OwnershipLost):
        finish(layout, claim, mode, S.COMPLETED)
    state = read_state(layout, task_id)
    assert state.status is S.PENDING and state.attempt_index == 1 and state.claim_token is None


def test_heartbeat_versions_are_pruned_but_never_the_claim_and_a_stale_writer_stays_void(staged_run, monkeypatch):
    """A long task heart-beats many times: its own superseded heartbeat versions are removed (once
    superseded KEEP_SUPERSEDED_S, here 0), the PENDING and claim versions stay, so the folder stays
    small. A canceller that read a heartbeat version since pruned and commits onto its free name
    afterwards is voided by its check after the commit (it reads again and cancels the current one)."""
    monkeypatch.setattr(lifecycle, "KEEP_SUPERSEDED_S", 0.0)
    layout, task_id, mode = _one_task(staged_run)
    claim = TaskPicker(layout, SHARD, mode, "A", 30.0).next_claim()
    renew_lease(layout, claim, mode, 30.0)  # version 2: the claim written down
    renew_lease(layout, claim, mode, 30.0)  # version 3
    stale = versioned.read_bytes(layout.task_dir(task_id), "state")
    for _ in range(4):
        renew_lease(layout, claim, mode, 30.0)  # versions 4..7; 3..6 pruned as superseded
    names = sorted(n for n in os.listdir(layout.task_dir(task_id)) if n.startswith("state."))
    assert names == ["state.1.json", "state.2.json", "state.7.json"]
    assert stale[0] == 3 and not versioned.commit(layout.task_dir(task_id), "state", 3, {"stale": True},
                                                  prune_old=False)  # name 4 was free again: voided
    assert read_state(layout, task_id).claim_token == claim.token
    assert finish(layout, claim, mode, S.COMPLETED).status is S.COMPLETED
    assert read_state(layout, task_id).status is S.COMPLETED
