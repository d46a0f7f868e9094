"""Attempt folders as claim fences: each `attempts/<i>` is made by exactly one claimer.

A first attempt's claim is not written down when it is taken (store/lifecycle.py): the moved queue
token and this folder are all there is until the worker's first heartbeat or its end. `mkdir` is
exclusive on every filesystem, across client mounts too, so two processes that both believe they
claimed the same PENDING attempt (a stalled claimer and the one that took over from it) cannot
both run in its folder: the second finds the folder taken and settles that attempt first.

A folder whose attempt no state ever recorded means its claimer died or stalled before its first
heartbeat. If it left a COMPLETED result, the task is completed from it (salvaged); otherwise the
attempt counts as orphaned, like a RUNNING task whose lease ran out.
"""

from __future__ import annotations

import os
import time

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import has_completed_result
from pipe_rules.store.taskstate import TaskStateRecord

S = TaskState


def take_attempt_folder(layout: RunLayout, task_id: str, attempt: int) -> bool:
    """Create the attempt's folder; False if it already exists (another claimer made it)."""
    path = layout.attempt_dir(task_id, attempt)
    try:
        os.mkdir(path)
    except FileNotFoundError:  # a run staged before attempts/ was made at staging
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path)
        except FileExistsError:
            return False
    except FileExistsError:
        return False
    return True


def requeue_or_give_up(record: TaskStateRecord, by: str, now: float) -> None:
    """From FAILED_RETRYABLE or ORPHANED: back to PENDING with the next attempt, or FAILED_TERMINAL."""
    record.clear_claim()
    if record.attempt_index + 1 < record.max_attempts:
        record.move(S.PENDING, by, attempt_index=record.attempt_index + 1, started_at=None, ended_at=None)
    else:
        record.move(S.FAILED_TERMINAL, by, ended_at=now,
                    failure_reason=f"retry budget of {record.max_attempts} attempts spent; last: {record.failure_reason}")


def settle_unrecorded(layout: RunLayout, record: TaskStateRecord, by: str) -> None:
    """`record` is PENDING at an attempt whose folder someone else made: record what that claimer
    did, completed from its COMPLETED result.json, or orphaned (then re-queued or out of budget)."""
    now = time.time()
    attempt = record.attempt_index
    record.move(S.CLAIMED, by, claimed_by=by, claimed_at=now)
    record.move(S.RUNNING, by)
    if has_completed_result(layout.result(record.task_id, attempt)):
        record.move(S.COMPLETED, by, ended_at=now, salvaged=True, failure_class=None, failure_reason=None)
        record.clear_claim()
        return
    record.move(S.ORPHANED, by, failure_class="transient",
                failure_reason=f"attempt {attempt} was begun by a worker that never recorded its claim "
                               "(killed or stalled before its first heartbeat)")
    requeue_or_give_up(record, by, now)
