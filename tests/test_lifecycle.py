"""Claims, leases, ownership and the terminal write, against real files and real processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time

import pytest
from conftest import PYTHON, wait_until

from pipe_rules.contracts.errors import OwnershipLost
from pipe_rules.execution.worker import run_worker
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import claim_and_start, finish, orphan_if_expired, renew_lease
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state


def _first(layout: RunLayout) -> str:
    return manifest_task_ids(layout)[0]


def _claim_in_process(root, task_id, barrier, queue):
    barrier.wait()
    claim = claim_and_start(RunLayout(root), task_id, "flock", f"w{os.getpid()}", 60)
    queue.put(claim is not None)


def test_concurrent_claims_from_processes_have_exactly_one_winner(staged_run):
    layout = staged_run(1)
    task_id = _first(layout)
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(layout.root, task_id, barrier, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    wins = [queue.get(timeout=5) for _ in procs]
    assert wins.count(True) == 1
    # the winner's claim is its attempt folder until its first heartbeat or its finish writes it down
    assert os.listdir(layout.attempts_dir(task_id)) == ["0"]
    assert read_state(layout, task_id).status is TaskState.PENDING


def test_stale_owner_cannot_write_after_reassignment(staged_run):
    """ARC F23 with the check-then-write race: A's token is checked inside the same lock as its write."""
    layout = staged_run(1, lease_s=30)
    task_id = _first(layout)
    claim_a = claim_and_start(layout, task_id, "flock", "worker-a", 30)
    renew_lease(layout, claim_a, "flock", 30)  # A's first heartbeat writes its claim down
    assert read_state(layout, task_id).status is TaskState.RUNNING
    # A's lease runs out: the reconciler re-queues the task and B claims it.
    assert orphan_if_expired(layout, task_id, "flock", time.time() + 3600, 0, salvage=False) is not None
    claim_b = claim_and_start(layout, task_id, "flock", "worker-b", 30)
    assert claim_b.attempt_index == 1
    with pytest.raises(OwnershipLost, match="worker-a no longer owns"):
        finish(layout, claim_a, "flock", TaskState.COMPLETED)
    state = read_state(layout, task_id)
    assert (state.status, state.claimed_by) == (TaskState.RUNNING, "worker-b")
    finish(layout, claim_b, "flock", TaskState.COMPLETED)
    assert [h["to"] for h in read_state(layout, task_id).history].count("COMPLETED") == 1


def test_a_claim_never_written_down_is_settled_by_a_takeover_and_its_owner_loses(staged_run):
    """A first claim writes nothing but its attempt folder. A lingering worker that saw the task
    PENDING behind its token for a lease takes over (settle=True): attempt 0 is orphaned, B runs
    attempt 1 in a folder of its own, and A can no longer write."""
    layout = staged_run(1, lease_s=30)
    task_id = _first(layout)
    claim_a = claim_and_start(layout, task_id, "flock", "worker-a", 30)
    assert claim_and_start(layout, task_id, "flock", "worker-b", 30) is None  # A holds the folder
    claim_b = claim_and_start(layout, task_id, "flock", "worker-b", 30, settle=True)
    assert (claim_a.attempt_index, claim_b.attempt_index) == (0, 1)
    assert sorted(os.listdir(layout.attempts_dir(task_id))) == ["0", "1"]
    with pytest.raises(OwnershipLost, match="worker-a no longer owns"):
        finish(layout, claim_a, "flock", TaskState.COMPLETED)
    state = finish(layout, claim_b, "flock", TaskState.COMPLETED)
    assert [h["to"] for h in state.history] == ["CLAIMED", "RUNNING", "ORPHANED", "PENDING", "CLAIMED", "RUNNING",
                                                 "COMPLETED"]
    assert read_state(layout, task_id).claimed_by is None and state.attempt_index == 1


def test_retryable_failure_requeues_until_budget_then_terminal(staged_run):
    layout = staged_run(1, max_attempts=2)
    task_id = _first(layout)
    for attempt, expected in ((0, TaskState.PENDING), (1, TaskState.FAILED_TERMINAL)):
        claim = claim_and_start(layout, task_id, "flock", "w", 30)
        assert claim.attempt_index == attempt
        record = finish(layout, claim, "flock", TaskState.FAILED_RETRYABLE, "transient", "no_output")
        assert record.status is expected
    assert "retry budget of 2 attempts spent" in read_state(layout, task_id).failure_reason


def test_engine_error_is_never_retried(staged_run):
    layout = staged_run(1)
    task_id = _first(layout)
    claim = claim_and_start(layout, task_id, "flock", "w", 30)
    record = finish(layout, claim, "flock", TaskState.FAILED_ESS, "ess", "scf_not_converged")
    assert record.status is TaskState.FAILED_ESS
    reconcile(layout)
    assert read_state(layout, task_id).status is TaskState.FAILED_ESS
    assert not layout.pending_token(record.shard, task_id).exists()


@pytest.mark.slow
def test_many_workers_complete_every_task_exactly_once(staged_run):
    layout = staged_run(40, shards=3)
    procs = [subprocess.Popen([PYTHON, "-m", "pipe_rules", "work", str(layout.root), "--shard", f"shard-00{i}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(3)]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    for task_id in manifest_task_ids(layout):
        state = read_state(layout, task_id)
        assert state.status is TaskState.COMPLETED
        assert [h["to"] for h in state.history].count("COMPLETED") == 1
        assert read_result(layout.result(task_id, 0))["status"] == "COMPLETED"


def test_worker_skips_completed_tasks_and_leaves_results_alone(staged_run):
    layout = staged_run(3)
    assert run_worker(layout.root, install_signals=False).completed == 3
    stamps = {t: layout.result(t, 0).stat().st_mtime_ns for t in manifest_task_ids(layout)}
    again = run_worker(layout.root, install_signals=False)
    assert (again.completed, again.failed) == (0, 0)
    assert stamps == {t: layout.result(t, 0).stat().st_mtime_ns for t in manifest_task_ids(layout)}


def _start_worker(layout, *extra):
    return subprocess.Popen([PYTHON, "-m", "pipe_rules", "work", str(layout.root), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _worker_running_the_task(layout):
    """A `pipe-rules work --no-linger` process, once its (only) task is RUNNING."""
    task_id = _first(layout)
    worker = _start_worker(layout, "--no-linger")
    wait_until(lambda: read_state(layout, task_id).status is TaskState.RUNNING, 30, "the task RUNNING")
    return worker, task_id


@pytest.mark.slow
def test_sigkill_mid_task_lease_expires_and_task_runs_again_once(staged_run):
    layout = staged_run(1, lease_s=1, heartbeat_s=0.25, options={"sleep_s": 3})
    victim, task_id = _worker_running_the_task(layout)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    summary = run_worker(layout.root, install_signals=False)
    state = read_state(layout, task_id)
    assert summary.completed == 1
    assert state.status is TaskState.COMPLETED and state.attempt_index == 1
    moves = [(h["from"], h["to"]) for h in state.history]
    assert ("RUNNING", "ORPHANED") in moves and moves.count(("RUNNING", "COMPLETED")) == 1
    assert not layout.result(task_id, 0).exists()  # the killed attempt left no half result
    assert read_result(layout.result(task_id, 1))["status"] == "COMPLETED"


def test_sigterm_hands_the_running_task_back_as_retryable(staged_run):
    layout = staged_run(1, options={"sleep_s": 60})
    worker, task_id = _worker_running_the_task(layout)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 143  # well before the 60 s task would have ended
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index) == (TaskState.PENDING, 1)
    assert [h["to"] for h in state.history][-2:] == ["FAILED_RETRYABLE", "PENDING"]
    assert layout.pending_token(state.shard, task_id).exists()
    result = read_result(layout.result(task_id, 0))
    assert (result["status"], result["failure_reason"]) == ("FAILED", "terminated")


@pytest.mark.slow
def test_heartbeat_keeps_a_task_alive_past_its_lease(staged_run):
    layout = staged_run(1, lease_s=1.5, heartbeat_s=0.3, options={"sleep_s": 5})
    worker, task_id = _worker_running_the_task(layout)
    first_lease_end = read_state(layout, task_id).lease_expires_at  # without heartbeats it ends here
    orphaned, rounds_past_the_first_lease = 0, 0
    while worker.poll() is None:  # an eager reconciler polls the whole time
        orphaned += len(reconcile(layout).orphaned)
        rounds_past_the_first_lease += time.time() > first_lease_end
        time.sleep(0.2)
    state = read_state(layout, task_id)
    assert orphaned == 0
    assert (state.status, state.attempt_index) == (TaskState.COMPLETED, 0)
    assert rounds_past_the_first_lease > 0  # the reconciler did look after the lease had been renewed


def test_a_worker_steals_every_other_shards_work(staged_run):
    """A shard whose siblings never start still gets the whole run done."""
    layout = staged_run(9, shards=3)
    summary = run_worker(layout.root, shard="shard-001", install_signals=False)
    assert summary.completed == 9
    done_order = sorted(manifest_task_ids(layout), key=lambda t: read_state(layout, t).ended_at)
    first_three = {read_state(layout, t).shard for t in done_order[:3]}
    assert first_three == {"shard-001"}  # its own shard first, then the others


def test_a_request_the_engine_cannot_run_ends_terminal_at_once_without_a_traceback(staged_run):
    layout = staged_run(1, options={"fail": "sometimes"})  # noop refuses the option: no retry can help
    task_id = _first(layout)
    run_worker(layout.root, install_signals=False, linger=False)
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index, state.failure_reason) == (TaskState.FAILED_TERMINAL, 0, "unsupported")
    result = read_result(layout.result(task_id, 0))
    assert result["engine_message"].startswith("noop engine: 'fail' must be one of ess, transient")
    assert not (layout.attempt_dir(task_id, 0) / "traceback.txt").exists()


def test_an_engine_bug_keeps_its_traceback_and_is_retried(staged_run, monkeypatch):
    """Any exception but InvalidRequest is a bug (here a ValueError deep in the engine), not 'unsupported'."""
    from pipe_rules.engines.noop import NoopEngine

    def buggy(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")
    monkeypatch.setattr(NoopEngine, "run", buggy)
    layout = staged_run(1, max_attempts=2)
    task_id = _first(layout)
    run_worker(layout.root, install_signals=False, linger=False)
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index) == (TaskState.FAILED_TERMINAL, 1)  # both attempts spent
    for attempt in (0, 1):
        result = read_result(layout.result(task_id, attempt))
        assert (result["failure_class"], result["failure_reason"]) == ("transient", "worker_error")
        assert result["engine_message"] == "ValueError: operands could not be broadcast together"
        trace = (layout.attempt_dir(task_id, attempt) / "traceback.txt").read_text()
        assert "in buggy" in trace and trace.rstrip().endswith("ValueError: operands could not be broadcast together")
