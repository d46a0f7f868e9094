"""The races of issue 10, each made to happen at its exact step (an injected pause or a second actor
run inside the first one's window), never by sleeping and hoping. Each test fails on the code
before the fix (the docstring says how) and passes now."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
import yaml

from conftest import PYTHON, pipe_rules_cli, wait_until, write_config
from pipe_rules.contracts.errors import OwnershipLost, StagingError
from pipe_rules.execution.worker import run_worker
from pipe_rules.inputs import staging
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.reporting.status import run_status
from pipe_rules.store import fsio, lifecycle, locks, reconcile as reconcile_mod, versioned
from pipe_rules.store.cancel import cancel_run
from pipe_rules.store.claims import TaskPicker
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import finish, release
from pipe_rules.store.locks import LeaseLock, LockTimeout, LockUnsupported, locked
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TaskState as S
from pipe_rules.store.taskstate import read_state

SHARD = "shard-000"


def _picker(layout: RunLayout, name: str, lease_s: float = 30.0) -> TaskPicker:
    return TaskPicker(layout, SHARD, read_run(layout).lock_mode, name, lease_s)


# -- 1. token restore order -------------------------------------------------------------------------

def test_requeue_never_drops_the_inflight_token_of_the_next_claim(staged_run, monkeypatch):
    """Worker A hands its task back; right after A's FIRST token operation, worker B claims the task.
    Before: A created the pending token, B took it, then A deleted the in-flight token, which was
    B's: the RUNNING task vanished from `status` (counted COMPLETED) and from the lingering workers'
    watch. Now A moves its token (one rename): B's claim keeps its in-flight token."""
    layout = staged_run(1, shards=1)
    task_id = manifest_task_ids(layout)[0]
    claim_a = _picker(layout, "A").next_claim()
    picker_b = _picker(layout, "B")
    seen: dict = {}

    def after_first_token_op(fn):
        def wrapped(*args):
            out = fn(*args)
            if "b" not in seen:
                seen["b"] = picker_b.next_claim()  # B runs inside A's window
            return out
        return wrapped

    for name in ("_move", "_touch", "remove_if_present"):
        monkeypatch.setattr(lifecycle, name, after_first_token_op(getattr(lifecycle, name)))
    release(layout, claim_a, read_run(layout).lock_mode, "walltime")
    monkeypatch.undo()
    assert seen["b"] is not None and seen["b"].attempt_index == 1, "B did not get the re-queued task"
    assert read_state(layout, task_id).status is S.RUNNING
    assert layout.inflight_token(task_id).exists(), "B's running task lost its in-flight token"
    assert run_status(layout).counts[S.RUNNING.value] == 1 and run_status(layout).counts[S.COMPLETED.value] == 0


def test_reconcile_while_a_claim_is_half_done_leaves_the_task_a_token(staged_run, monkeypatch):
    """A reconciler reads a task as PENDING (lock-free) while a worker's claim is half done (token
    moved, folder not yet made). Before, it then removed the in-flight token of a task it believed
    not in flight. Now it leaves a token younger than a lease where it is (the claim may be live, and
    is not written down before its first heartbeat), so the task keeps exactly one token."""
    layout = staged_run(1, shards=1)
    task_id = manifest_task_ids(layout)[0]
    picker = _picker(layout, "A")
    real = lifecycle.take_attempt_folder
    reports = []

    def reconcile_first(layout_, task, attempt):
        if not reports:
            reports.append(reconcile(layout_))  # token already in inflight/, state still PENDING
        return real(layout_, task, attempt)

    monkeypatch.setattr(lifecycle, "take_attempt_folder", reconcile_first)
    claim = picker.next_claim()
    monkeypatch.undo()
    assert reports, "the reconciler did not run inside the claim's window"
    assert claim is not None and read_state(layout, task_id).status is S.PENDING  # claimed, not yet written down
    tokens = [layout.inflight_token(task_id).exists(), layout.pending_token(SHARD, task_id).exists()]
    assert tokens.count(True) == 1, f"in-flight, pending token present: {tokens}"
    # a token in the wrong place still leads a worker to the task, which folds it back in
    assert _picker(layout, "B").next_claim() is None
    assert layout.inflight_token(task_id).exists() and not layout.pending_token(SHARD, task_id).exists()


def test_a_lingering_worker_claims_a_task_stranded_behind_its_inflight_token(staged_run):
    """A claimer died between moving a task's token into queue/inflight/ and committing its claim:
    the task is PENDING with an in-flight token and no pending one, and only a lingering worker can
    claim it. Before: the lingering worker's watch (issue 13: read each state once until its lease can
    expire) set every task it read as not in flight to "look again later" and never handed it on, so
    the stranded task counted as held until linger_s ran out and the worker exited without it
    (1-6 tasks left PENDING per kill storm on both rigs)."""
    layout = staged_run(2, shards=1, linger_s=3, heartbeat_s=0.2, lease_s=1)
    stranded, other = manifest_task_ids(layout)
    os.rename(layout.pending_token(SHARD, stranded), layout.inflight_token(stranded))
    summary = run_worker(layout.root, install_signals=False)
    assert read_state(layout, stranded).status is S.COMPLETED, "the stranded task was left behind"
    assert read_state(layout, other).status is S.COMPLETED and summary.completed == 2
    assert not os.listdir(layout.inflight_dir)


# -- 2. a lock timeout is not a corrupt state ------------------------------------------------------------

def test_lock_timeout_while_claiming_puts_the_token_back(staged_run, monkeypatch):
    """A claim whose bucket lock is held by a stuck process times out. Before, the timeout was a
    StateError: the claim treated the state as corrupt and dropped the token (task PENDING with no
    token until a full reconcile). Now the token goes back and the task is claimed once the lock is free.
    Only a retry's claim takes the lock (a first attempt's creates version 2 without it), so the task
    is handed back once first."""
    layout = staged_run(1, shards=1)
    task_id = manifest_task_ids(layout)[0]
    mode = read_run(layout).lock_mode
    release(layout, _picker(layout, "A").next_claim(), mode, "walltime")  # PENDING again, attempt 1
    monkeypatch.setattr(locks, "LOCK_TIMEOUT_S", 0.3)
    holder = os.open(layout.state_lock(task_id), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a stuck holder: another open file description
        assert _picker(layout, "A").next_claim() is None
        assert layout.pending_token(SHARD, task_id).exists() and not layout.inflight_token(task_id).exists()
        assert read_state(layout, task_id).status is S.PENDING
    finally:
        os.close(holder)
    claim = _picker(layout, "A").next_claim()
    assert claim is not None and claim.task_id == task_id and claim.attempt_index == 1


def test_a_first_claim_and_its_finish_take_no_lock(staged_run, monkeypatch):
    """The drain path of a first attempt (claim, heartbeat, finish) commits by exclusive creation
    alone: a stuck holder of the task's lock does not delay it (before: every claim and finish waited
    for the lock, two opens and two flocks per task)."""
    layout = staged_run(1, shards=1)
    task_id = manifest_task_ids(layout)[0]
    mode = read_run(layout).lock_mode
    monkeypatch.setattr(locks, "LOCK_TIMEOUT_S", 0.3)
    holder = os.open(layout.state_lock(task_id), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        claim = _picker(layout, "A").next_claim()
        assert claim is not None
        lifecycle.renew_lease(layout, claim, mode, 30.0)
        assert finish(layout, claim, mode, S.COMPLETED).status is S.COMPLETED
    finally:
        os.close(holder)
    assert read_state(layout, task_id).status is S.COMPLETED
    assert sorted(os.listdir(layout.task_dir(task_id))) == [
        "attempts", "spec.json", "state.1.json", "state.2.json", "state.3.json"]


def test_reconcile_never_rebuilds_a_state_whose_lock_timed_out(staged_run, monkeypatch):
    layout = staged_run(1, shards=1)
    task_id = manifest_task_ids(layout)[0]
    claim = _picker(layout, "A", lease_s=0.0).next_claim()
    lifecycle.renew_lease(layout, claim, read_run(layout).lock_mode, 0.0)  # written down; expires at once
    monkeypatch.setattr(locks, "LOCK_TIMEOUT_S", 0.3)
    holder = os.open(layout.state_lock(task_id), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        report = reconcile(layout)
    finally:
        os.close(holder)
    assert report.repaired == [] and report.counts[S.RUNNING.value] == 1
    assert [h["from"] for h in read_state(layout, task_id).history] == ["PENDING", "CLAIMED"]


# -- 3. staging into a cancelled run; a stager killed between state and token -------------------------

def test_staging_into_a_cancelled_run_writes_nothing(tmp_path):
    config = write_config(tmp_path, 2)
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    layout = RunLayout(campaign.run_dir("main"))
    cancel_run(layout)
    data = yaml.safe_load(config.read_text())
    data["species"].append({"label": "late", "xyz": "H 0 0 0\nH 0 0 0.9"})
    config.write_text(yaml.safe_dump(data))
    proc = pipe_rules_cli("stage", str(config))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(layout.run_json) in lines[0] and "cancelled" in lines[0]
    assert not layout.task_dir("late_species_sp").exists()
    assert not any(layout.pending_dir.rglob("late_species_sp"))


def test_cancel_during_staging_cancels_the_new_tasks(tmp_path, monkeypatch):
    """`cancel` runs while a stager writes its tasks (between its task files and its run update):
    before, the new task stayed PENDING in a CANCELLED run and a worker computed it."""
    config = write_config(tmp_path, 1)
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    layout = RunLayout(campaign.run_dir("main"))
    data = yaml.safe_load(config.read_text())
    data["species"].append({"label": "late", "xyz": "H 0 0 0\nH 0 0 0.9"})
    config.write_text(yaml.safe_dump(data))
    real = staging.update_run
    calls = []

    def cancel_in_between(*args, **kwargs):  # after the stager's task files, before its run update
        if not calls:
            calls.append(cancel_run(layout))
        return real(*args, **kwargs)

    monkeypatch.setattr(staging, "update_run", cancel_in_between)
    with pytest.raises(StagingError, match="cancelled"):
        stage_run(load_campaign(config), "main")
    assert read_state(layout, "late_species_sp").status is S.CANCELLED
    assert _picker(layout, "A").next_claim() is None


def test_restaging_gives_back_the_token_a_killed_stager_never_made(tmp_path, monkeypatch):
    config = write_config(tmp_path, 1, shards=1)
    campaign = load_campaign(config)

    def killed(_path):
        raise KeyboardInterrupt("stager killed between state and token")

    monkeypatch.setattr(staging, "touch_new", killed)
    with pytest.raises(KeyboardInterrupt):
        stage_run(campaign, "main")
    monkeypatch.undo()
    layout = RunLayout(campaign.run_dir("main"))
    task_id = "h2_0_species_sp"
    assert read_state(layout, task_id).status is S.PENDING and not layout.pending_token(SHARD, task_id).exists()
    stage_run(campaign, "main")
    claim = _picker(layout, "A").next_claim()
    assert claim is not None and claim.task_id == task_id


def test_a_stager_that_made_the_task_folder_loses_the_state_to_a_second_stager_inside_its_window(tmp_path,
                                                                                                monkeypatch):
    """Stager A makes a task's folder, so it looks for no existing state before its create (issue
    13). Right after A's mkdir, stager B writes the task's spec, state and token, and a worker claims
    it. A's exclusive create of version 1 must then fail and A must leave the task alone: had A
    taken the task for its own, it would make a second token for a task that is already running."""
    config = write_config(tmp_path, 1, shards=1)
    campaign = load_campaign(config)
    layout = RunLayout(campaign.run_dir("main"))
    real = staging._made_now
    seen: list = []

    def b_inside_a_window(folder):
        made = real(folder)
        if made and folder.parent.parent == layout.tasks_dir and not seen:
            spec = next(iter(staging.build_specs(campaign, campaign.runs[0])))
            seen.append(staging._write_task(layout, spec, SHARD, 3, set()))  # B, on the folder A just made
            seen.append(_picker(layout, "W").next_claim())
        return made

    monkeypatch.setattr(staging, "_made_now", b_inside_a_window)
    stage_run(campaign, "main")
    monkeypatch.undo()
    task_id = "h2_0_species_sp"
    assert seen[0] == (SHARD, True) and seen[1] is not None, "B and the worker did not run inside A's window"
    assert versioned.generations(layout.task_dir(task_id), "state") == [1]  # the claim: its attempt folder
    assert read_state(layout, task_id).status is S.PENDING and layout.attempt_dir(task_id, 0).is_dir()
    assert os.listdir(layout.pending_token(SHARD, task_id).parent) == [], "A made a second token"
    assert layout.inflight_token(task_id).exists()
    finish(layout, seen[1], read_run(layout).lock_mode, S.COMPLETED)
    assert run_status(layout).counts[S.COMPLETED.value] == 1


# -- 4. a rebuilt state never reuses the last attempt ---------------------------------------------------------

@pytest.mark.parametrize("folders,status,attempt", [((0,), S.PENDING, 1), ((0, 1), S.FAILED_TERMINAL, 1)])
def test_rebuilt_state_takes_the_attempt_after_the_newest_folder(staged_run, folders, status, attempt):
    """Before, the attempt was capped at max_attempts - 1: with attempts 0 and 1 on disk (budget 2) the
    rebuilt task was PENDING at attempt 1 again, beside a worker that may still be in that folder,
    one attempt over budget. Now it is FAILED_TERMINAL (budget spent)."""
    layout = staged_run(1, shards=1, max_attempts=2)
    task_id = manifest_task_ids(layout)[0]
    for index in folders:
        layout.attempt_dir(task_id, index).mkdir(parents=True)
    layout.state(task_id).write_text('{"status": "RUNN')
    report = reconcile(layout)
    state = read_state(layout, task_id)
    assert report.repaired == [task_id] and state.status is status and state.attempt_index == attempt
    if status is S.FAILED_TERMINAL:
        assert "retry budget of 2 attempts spent" in state.failure_reason


# -- 6. salvage is decided inside the compare-and-set --------------------------------------------------------

def test_salvage_is_judged_on_the_attempt_it_replaces(staged_run, monkeypatch):
    """The reconciler sees attempt 0 expired with a COMPLETED result (salvage!). Before it commits, the
    task is orphaned by another reconciler, re-claimed at attempt 1, and that claim expires too.
    Before, the salvage judged on attempt 0 was applied to attempt 1: COMPLETED with no result.
    Now it is judged on attempt 1: no result there, so the task is re-queued at attempt 2."""
    layout = staged_run(1, shards=1, max_attempts=3)
    task_id = manifest_task_ids(layout)[0]
    mode = read_run(layout).lock_mode
    claim = _picker(layout, "A", lease_s=0.0).next_claim()  # its claim made attempts/0
    lifecycle.renew_lease(layout, claim, mode, 0.0)  # written down; expires at once
    layout.result(task_id, 0).write_text(json.dumps({"status": "COMPLETED"}))
    real = reconcile_mod.orphan_if_expired
    calls = []

    def meanwhile(layout_, task, mode_, now, skew, salvage, by="reconciler"):
        if not calls:
            calls.append(real(layout_, task, mode_, now + 1, skew, False, by="an earlier reconciler"))
            again = _picker(layout, "B", lease_s=0.0).next_claim()
            assert again is not None and again.attempt_index == 1
            lifecycle.renew_lease(layout, again, mode_, 0.0)
            now = read_state(layout, task).lease_expires_at + 1
        return real(layout_, task, mode_, now, skew, salvage, by)

    monkeypatch.setattr(reconcile_mod, "orphan_if_expired", meanwhile)
    report = reconcile(layout)
    assert calls, f"the reconciler never reached its commit: {report}"
    state = read_state(layout, task_id)
    assert not state.salvaged and state.status is S.PENDING and state.attempt_index == 2
    with pytest.raises(OwnershipLost):
        finish(layout, claim, mode, S.COMPLETED)


# -- 7. flock never falls back to another file; the soft lock is a lease ------------------------------------

def test_flock_refused_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    def refused(*_args):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(locks.fcntl, "flock", refused)
    with pytest.raises(LockUnsupported, match="lock_mode flock"):
        with locked(tmp_path / "x.lock", "flock"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.lock"]  # no `x.lock.soft` beside it


def _dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = locks.process_started(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, started


def _plant(path, **holder) -> None:
    path.write_text(json.dumps({**locks.HOST_KEY, "token": "t", "lease_s": 1000.0, "renewals": 0, **holder}))


def test_soft_lock_of_a_dead_holder_on_this_host_is_broken_at_once(tmp_path):
    """Same host, boot and pid namespace, pid gone: broken without waiting for its (huge) lease."""
    pid, started = _dead_pid()
    _plant(tmp_path / "b.lock", pid=pid, started=started)
    lock = LeaseLock(tmp_path / "b.lock", timeout=30, lease_s=1000)
    lock.acquire()
    lock.release()


def test_soft_lock_of_a_live_holder_is_never_broken_while_it_renews(tmp_path):
    holder = LeaseLock(tmp_path / "b.lock", lease_s=1.0)
    holder.acquire()
    try:
        waiter = LeaseLock(tmp_path / "b.lock", timeout=4.0, lease_s=1.0)
        with pytest.raises(LockTimeout, match="held by"):
            waiter.acquire()  # the holder's renewals keep changing the lock: never judged silent
    finally:
        holder.release()


def test_soft_lock_of_a_silent_holder_on_another_host_is_broken_after_its_lease(tmp_path):
    _plant(tmp_path / "b.lock", host="othernode", pid=1, lease_s=0.5)
    lock = LeaseLock(tmp_path / "b.lock", timeout=30, lease_s=0.5)
    lock.acquire()
    assert json.loads((tmp_path / "b.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / "b.lock").exists()


def test_a_breaker_killed_mid_break_leaves_nothing_that_blocks(tmp_path, monkeypatch):
    _plant(tmp_path / "b.lock", host="othernode", pid=1, lease_s=0.2)
    real_unlink = os.unlink

    def killed_after_the_rename(path, *args, **kwargs):
        if ".broken." in str(path):
            raise KeyboardInterrupt("breaker killed")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(locks.os, "unlink", killed_after_the_rename)
    with pytest.raises(KeyboardInterrupt):
        LeaseLock(tmp_path / "b.lock", timeout=30, lease_s=0.2).acquire()
    monkeypatch.undo()
    lock = LeaseLock(tmp_path / "b.lock", timeout=30, lease_s=1000)
    lock.acquire()  # the name is free: taken at once, whatever the leftover's lease
    lock.release()
    assert [p.name for p in tmp_path.iterdir() if ".broken." in p.name]  # the leftover, which blocks nothing


# A holder paused INSIDE its critical section (after its read, before its write), then SIGSTOPped:
# its lease renewals stop too, as for a node that froze.
_STALLED_HOLDER = """
import sys, time
from pathlib import Path
from pipe_rules.contracts.errors import OwnershipLost
from pipe_rules.store import lifecycle
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import Claim, finish
from pipe_rules.store.locks import set_soft_lease
from pipe_rules.store.states import TaskState
root, reached, go, token = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
set_soft_lease(0.5)
real_owned = lifecycle._owned
def owned_then_pause(record, claim):
    real_owned(record, claim)
    if not reached.exists():
        reached.touch()
        while not go.exists():
            time.sleep(0.01)
lifecycle._owned = owned_then_pause
claim = Claim("h2_0_species_sp", token, "stalled", 0)
try:
    finish(RunLayout(root), claim, "soft", TaskState.COMPLETED)
    print("WROTE")
except OwnershipLost:
    print("LOST")
"""


def test_a_holder_stalled_past_its_lease_cannot_write_afterwards(tmp_path):
    """Fencing: a soft-lock holder frozen between its read and its write loses its lock to a waiter
    (lease expired), which cancels the task. When the holder wakes its write fails (the version it
    read is no longer current), and on the new version it finds it owns nothing: CANCELLED stays."""
    config = write_config(tmp_path, 1, shards=1)
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "lock_mode": "soft", "lock_lease_s": 0.5}))
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    layout = RunLayout(campaign.run_dir("main"))
    claim = _picker(layout, "A").next_claim()
    lifecycle.renew_lease(layout, claim, "soft", 30.0)  # its first heartbeat writes the claim down
    reached, go = tmp_path / "reached", tmp_path / "go"
    holder = subprocess.Popen([PYTHON, "-c", _STALLED_HOLDER, str(layout.root), str(reached), str(go), claim.token],
                              stdout=subprocess.PIPE, text=True)
    try:
        wait_until(reached.exists, what="holder inside its critical section")
        holder.send_signal(signal.SIGSTOP)
        locks.set_soft_lease(0.5)
        assert lifecycle.cancel(layout, claim.task_id, "soft")  # waits out the silent lease, breaks, writes
        go.touch()
        holder.send_signal(signal.SIGCONT)
        out, _ = holder.communicate(timeout=60)
    finally:
        locks.set_soft_lease(locks.SOFT_LEASE_S)
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert out.strip() == "LOST"
    state = read_state(layout, claim.task_id)
    assert state.status is S.CANCELLED and [h["to"] for h in state.history][-1] == "CANCELLED"


# -- versions: a stale writer's commit is void ------------------------------------------------------------

def test_a_writer_whose_version_was_superseded_and_pruned_commits_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(versioned, "KEEP_SUPERSEDED_S", 0.0)
    assert versioned.create(tmp_path, "doc", {"v": 1})
    for base in (1, 2, 3):
        assert versioned.commit(tmp_path, "doc", base, {"v": base + 1})
    assert not (tmp_path / "doc.2.json").exists()  # pruned: its name is free again
    assert not versioned.commit(tmp_path, "doc", 1, {"v": "stale"})  # based on version 1
    gen, raw, _ = versioned.read_bytes(tmp_path, "doc")
    assert gen == 4 and json.loads(raw) == {"v": 4} and not (tmp_path / "doc.2.json").exists()


def test_a_document_committed_on_at_once_still_counts_as_created(tmp_path, monkeypatch):
    """A stager creates a task's state; before its check that generation 1 is current, a second stager
    has made the missing token and a worker has claimed the task (generation 2). Before, the first
    stager took generation 2 for an older document hidden by a stale listing: it unlinked its own
    version and counted the task as not created (concurrent stagers' counts summed to 498 of 500)."""
    real = versioned.create_new

    def link_then_commit_on_top(path, data):
        linked = real(path, data)
        if linked and path.name == "doc.1.json":
            assert versioned.commit(path.parent, "doc", 1, {"v": 2})  # the worker's claim, in between
        return linked

    monkeypatch.setattr(versioned, "create_new", link_then_commit_on_top)
    assert versioned.create(tmp_path, "doc", {"v": 1})
    monkeypatch.undo()
    gen, raw, _ = versioned.read_bytes(tmp_path, "doc")
    assert gen == 2 and json.loads(raw) == {"v": 2} and (tmp_path / "doc.1.json").exists()


# -- 5. a worker whose task was taken away stops its engine ----------------------------------------------------

def test_a_cancelled_task_stops_its_engine_instead_of_running_on(tmp_path):
    """The task (a 10-minute engine call) is cancelled while it runs. Before, `heartbeat.lost` was set
    and never read: the worker computed on until the engine returned. Now the heartbeat interrupts the
    engine as SIGTERM does, the worker records nothing over the CANCELLED state and goes on (exit 0)."""
    config = write_config(tmp_path, 1, shards=1, heartbeat_s=0.2, options={"sleep_s": 600})
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    layout = RunLayout(campaign.run_dir("main"))
    task_id = manifest_task_ids(layout)[0]
    worker = subprocess.Popen([PYTHON, "-m", "pipe_rules", "work", str(layout.root), "--no-linger"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: read_state(layout, task_id).status is S.RUNNING, what="task running")
        assert lifecycle.cancel(layout, task_id, read_run(layout).lock_mode)
        out, _ = worker.communicate(timeout=120)  # not interrupted: 600 s
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, out
    assert "1 lost ownership" in out, out
    state = read_state(layout, task_id)
    assert state.status is S.CANCELLED and [h["to"] for h in state.history][-1] == "CANCELLED"
    result = json.loads(layout.result(task_id, 0).read_text())
    assert result["failure_reason"] == "ownership_lost", result


def _stop_outside_its_lock(proc, lock_path) -> None:
    """SIGSTOP `proc` at a moment it holds no flock on `lock_path` (else resume it and try again)."""
    while True:
        proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED, what="worker stopped")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        except BlockingIOError:
            proc.send_signal(signal.SIGCONT)
        finally:
            os.close(fd)


def test_a_reassigned_task_stops_the_old_workers_engine_and_keeps_the_new_claim(tmp_path):
    """Worker A's task (a 10-minute engine call) is orphaned as if A's lease had expired and claimed by
    B. Before, A computed on until its engine returned. Now A's heartbeat finds the task re-assigned,
    stops the engine and writes nothing over B's claim."""
    config = write_config(tmp_path, 1, shards=1, heartbeat_s=0.2, options={"sleep_s": 600})
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    layout = RunLayout(campaign.run_dir("main"))
    task_id = manifest_task_ids(layout)[0]
    mode = read_run(layout).lock_mode
    worker = subprocess.Popen([PYTHON, "-m", "pipe_rules", "work", str(layout.root), "--no-linger"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: read_state(layout, task_id).status is S.RUNNING, what="task running")
        _stop_outside_its_lock(worker, layout.state_lock(task_id))  # A frozen: it cannot re-claim in between
        far = read_state(layout, task_id).lease_expires_at + 3600  # A's lease, seen from far ahead: expired
        assert lifecycle.orphan_if_expired(layout, task_id, mode, far, 0, lambda _attempt: False) is not None
        claim_b = _picker(layout, "B").next_claim()
        assert claim_b is not None and claim_b.attempt_index == 1
        worker.send_signal(signal.SIGCONT)
        out, _ = worker.communicate(timeout=120)  # not interrupted: 600 s
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0 and "1 lost ownership" in out, out
    state = read_state(layout, task_id)
    assert state.status is S.RUNNING and state.claim_token == claim_b.token and state.attempt_index == 1


# -- 8. the API across hosts ---------------------------------------------------------------------------------------

def test_another_host_never_takes_a_live_launcher_for_dead(tmp_path):
    """Before, the handle had no host and liveness came from the local /proc: on a second host the
    launcher's pid was simply absent, so that host unlocked and started a second snakemake. Now a
    launcher of another host counts as alive while its lease is fresh, and only then as gone."""
    from dataclasses import replace as dc_replace

    from pipe_rules.contracts.errors import PipeRulesError
    from pipe_rules.host.api import PipeAPI
    from pipe_rules.host.launcher import LAUNCHER_LEASE_S

    api = PipeAPI(tmp_path / "project")
    handle = api.create_run("r", species=[{"label": "water", "xyz": "O 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469"}],
                            family="species_sp", engine="noop")
    elsewhere = {**locks.HOST_KEY, "host": "othernode", "pid_ns": "1"}
    api._save(dc_replace(handle, pid=os.getpid() + 10_000_000, started=1.0, host=elsewhere, launches=1))
    lease = tmp_path / "project" / "r" / "launcher.lease"
    assert api.launcher_alive("r"), "no lease yet: a launcher on another host may be alive"
    lease.touch()
    assert api.launcher_alive("r") and not api.poll("r").needs_launch
    with pytest.raises(PipeRulesError, match="is running .* on othernode"):
        api.launch("r", profile="local")
    assert not (tmp_path / "project" / "r" / "launcher.log").exists() or "--unlock" not in \
        (tmp_path / "project" / "r" / "launcher.log").read_text()
    old = lease.stat().st_mtime - LAUNCHER_LEASE_S - 1
    os.utime(lease, (old, old))
    assert not api.launcher_alive("r") and api.poll("r").needs_launch


def _other_client_creates_first(monkeypatch, path, vanish_after: bool = False):
    """FUSE (GlusterFS) answers an O_CREAT open with EEXIST when another client created the name
    between this client's lookup and its create: do exactly that, once, for `path`. `vanish_after`:
    and the name is gone again before this client opens it as existing."""
    real_open = os.open
    calls = {"create": 0, "plain": 0}

    def fake_open(target, flags, mode=0o777, **kw):
        if os.fspath(target) == os.fspath(path):
            if flags & os.O_CREAT and not calls["create"]:
                calls["create"] += 1
                os.close(real_open(target, os.O_WRONLY | os.O_CREAT, 0o644))  # the other client's create
                raise FileExistsError(errno.EEXIST, "File exists", os.fspath(target))
            if not flags & os.O_CREAT:
                calls["plain"] += 1
                if vanish_after and calls["plain"] == 1:
                    os.unlink(target)
        return real_open(target, flags, mode, **kw)

    monkeypatch.setattr(os, "open", fake_open)
    return calls


def test_a_flock_whose_lock_file_another_client_created_at_the_same_instant_is_taken_and_excludes(
        tmp_path, monkeypatch):
    path = tmp_path / "locks" / "ba.lock"
    path.parent.mkdir()
    calls = _other_client_creates_first(monkeypatch, path)
    holder = locks.FlockLock(path, timeout=0.05)
    holder.acquire()  # was: FileExistsError out of os.open(O_CREAT), the claimer crashed
    try:
        assert calls == {"create": 1, "plain": 1}
        with pytest.raises(LockTimeout):
            locks.FlockLock(path, timeout=0.05).acquire()
    finally:
        holder.release()


def test_a_shared_file_whose_name_appears_and_vanishes_again_is_created_afresh(tmp_path, monkeypatch):
    path = tmp_path / "manifest.tsv"
    calls = _other_client_creates_first(monkeypatch, path, vanish_after=True)
    fd = fsio.open_or_create(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"line\n")
    os.close(fd)
    assert calls == {"create": 1, "plain": 1} and path.read_bytes() == b"line\n"
