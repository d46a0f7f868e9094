"""Every task transition the system makes, each one atomic under the task's lock.

The ownership check (claim token) and the write that depends on it happen inside the same
critical section, so a worker whose task was orphaned and re-claimed can never overwrite the new
owner's state (ARC's check-then-write race).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from pipe_rules.contracts.errors import InvalidTransition, OwnershipLost
from pipe_rules.store.fsio import remove_if_present, touch_new
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.states import IN_FLIGHT_TASK_STATES, TASK_TRANSITIONS, TERMINAL_TASK_STATES, TaskState
from pipe_rules.store.taskstate import NO_WRITE, TaskStateRecord, update_state

S = TaskState
ENDED_STATES = frozenset({S.FAILED_ESS, S.FAILED_TERMINAL, S.CANCELLED})  # terminal, not COMPLETED


@dataclass(frozen=True)
class Claim:
    task_id: str
    token: str
    worker_id: str
    attempt_index: int


def _requeue_or_give_up(record: TaskStateRecord, by: str, now: float) -> None:
    """From FAILED_RETRYABLE or ORPHANED: back to PENDING with the next attempt, or FAILED_TERMINAL."""
    record.clear_claim()
    if record.attempt_index + 1 < record.max_attempts:
        record.move(S.PENDING, by, attempt_index=record.attempt_index + 1, started_at=None, ended_at=None)
    else:
        record.move(S.FAILED_TERMINAL, by, ended_at=now,
                    failure_reason=f"retry budget of {record.max_attempts} attempts spent; last: {record.failure_reason}")


def _touch(path) -> None:
    try:
        touch_new(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        touch_new(path)


def _restore_token(layout: RunLayout, record: TaskStateRecord) -> None:
    if record.status is S.PENDING:
        _touch(layout.pending_token(record.shard, record.task_id))
    if record.status not in IN_FLIGHT_TASK_STATES:
        remove_if_present(layout.inflight_token(record.task_id))
    if record.status in ENDED_STATES:
        _touch(layout.ended_token(record.status.value, record.task_id))


def claim_and_start(layout: RunLayout, task_id: str, lock_mode: str, worker_id: str, lease_s: float,
                    inflight_placed: bool = False) -> Claim | None:
    """PENDING -> CLAIMED -> RUNNING in one critical section; None if the task is not PENDING any more.

    `inflight_placed`: the caller already put the in-flight token in place (the picker moves the
    pending token there with one rename instead of an unlink and a create)."""
    token = uuid.uuid4().hex
    if not inflight_placed:
        touch_new(layout.inflight_token(task_id))

    def change(record: TaskStateRecord):
        if record.status is not S.PENDING:
            return NO_WRITE
        now = time.time()
        record.move(S.CLAIMED, worker_id, claimed_by=worker_id, claim_token=token, claimed_at=now,
                    lease_expires_at=now + lease_s, heartbeat_at=now, failure_class=None, failure_reason=None)
        record.move(S.RUNNING, worker_id, started_at=now)
        return Claim(task_id, token, worker_id, record.attempt_index)

    record, claim = update_state(layout, task_id, lock_mode, change)
    if claim is NO_WRITE:
        if record.status not in IN_FLIGHT_TASK_STATES:
            remove_if_present(layout.inflight_token(task_id))
        return None
    return claim


def _owned(record: TaskStateRecord, claim: Claim) -> None:
    if record.claim_token != claim.token or record.status not in IN_FLIGHT_TASK_STATES:
        raise OwnershipLost(
            f"worker {claim.worker_id} no longer owns task {claim.task_id} "
            f"(now {record.status.value}, claimed by {record.claimed_by})"
        )


def renew_lease(layout: RunLayout, claim: Claim, lock_mode: str, lease_s: float) -> None:
    """Heartbeat: push the lease forward; raises OwnershipLost if the task was taken away."""
    def change(record: TaskStateRecord):
        _owned(record, claim)
        now = time.time()
        record.heartbeat_at = now
        record.lease_expires_at = max(record.lease_expires_at or now, now + lease_s)

    update_state(layout, claim.task_id, lock_mode, change)


def finish(layout: RunLayout, claim: Claim, lock_mode: str, outcome: TaskState,
           failure_class: str | None = None, reason: str | None = None) -> TaskStateRecord:
    """Check ownership and write the terminal state as one step; retryable failures are re-queued."""
    if outcome not in (S.COMPLETED, S.FAILED_ESS, S.FAILED_RETRYABLE, S.FAILED_TERMINAL):
        raise InvalidTransition(f"{outcome.value} is not an outcome a worker can report")

    def change(record: TaskStateRecord):
        _owned(record, claim)
        now = time.time()
        record.move(outcome, claim.worker_id, ended_at=now, failure_class=failure_class, failure_reason=reason)
        if outcome is S.FAILED_RETRYABLE:
            _requeue_or_give_up(record, claim.worker_id, now)
        else:
            record.clear_claim()

    record, _ = update_state(layout, claim.task_id, lock_mode, change)
    _restore_token(layout, record)
    return record


def orphan_if_expired(layout: RunLayout, task_id: str, lock_mode: str, now: float, skew_s: float,
                      salvage: bool, by: str = "reconciler") -> TaskStateRecord | None:
    """Reconciler: an in-flight task whose lease ran out is orphaned and re-queued.

    `salvage` says the current attempt already left a valid COMPLETED result.json (the worker
    died between writing it and the terminal state): then the task is completed, not re-run.
    Returns the new record, or None when nothing changed.
    """
    def change(record: TaskStateRecord):
        if record.status not in IN_FLIGHT_TASK_STATES or record.lease_expires_at + skew_s > now:
            return NO_WRITE
        if salvage and record.status is S.RUNNING:
            record.move(S.COMPLETED, by, ended_at=now, salvaged=True)
            record.clear_claim()
            return None
        record.move(S.ORPHANED, by, failure_class="transient",
                    failure_reason=f"lease of {record.claimed_by} expired (no heartbeat)")
        _requeue_or_give_up(record, by, now)
        return None

    record, outcome = update_state(layout, task_id, lock_mode, change)
    if outcome is NO_WRITE:
        return None
    _restore_token(layout, record)
    return record


def release(layout: RunLayout, claim: Claim, lock_mode: str, reason: str) -> TaskStateRecord:
    """Hand a task back (SIGTERM at walltime): it becomes retryable and goes back to the queue."""
    return finish(layout, claim, lock_mode, S.FAILED_RETRYABLE, "transient", reason)


def cancel(layout: RunLayout, task_id: str, lock_mode: str, by: str = "user") -> bool:
    """PENDING/CLAIMED/RUNNING -> CANCELLED; a running worker then fails its ownership check."""
    def change(record: TaskStateRecord):
        if record.status in TERMINAL_TASK_STATES or S.CANCELLED not in TASK_TRANSITIONS[record.status]:
            return NO_WRITE
        record.move(S.CANCELLED, by, ended_at=time.time(), failure_reason="cancelled")
        record.clear_claim()
        return True

    record, outcome = update_state(layout, task_id, lock_mode, change)
    if outcome is True:
        remove_if_present(layout.pending_token(record.shard, task_id))
        _restore_token(layout, record)
        return True
    return False


def repair_tokens(layout: RunLayout, record: TaskStateRecord) -> None:
    """Make the queue tokens agree with the state (after a crash between the two writes)."""
    _restore_token(layout, record)
    if record.status is not S.PENDING:
        remove_if_present(layout.pending_token(record.shard, record.task_id))
    for state in ENDED_STATES - {record.status}:
        remove_if_present(layout.ended_token(state.value, record.task_id))
