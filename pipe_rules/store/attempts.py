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
from typing import Callable

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.states import TaskState
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


def settle_unrecorded(record: TaskStateRecord, by: str, completed: Callable[[int], bool],
                      requeue: Callable[[TaskStateRecord, str, float], None]) -> None:
    """`record` is PENDING at an attempt whose folder someone else made: record what that claimer did.

    `completed(attempt)`: that attempt left a COMPLETED result.json. `requeue` is the lifecycle's
    rule for an orphaned attempt (next attempt, or FAILED_TERMINAL once the budget is spent)."""
    now = time.time()
    attempt = record.attempt_index
    record.move(S.CLAIMED, by, claimed_by=by, claimed_at=now)
    record.move(S.RUNNING, by)
    if completed(attempt):
        record.move(S.COMPLETED, by, ended_at=now, salvaged=True, failure_class=None, failure_reason=None)
        record.clear_claim()
        return
    record.move(S.ORPHANED, by, failure_class="transient",
                failure_reason=f"attempt {attempt} was begun by a worker that never recorded its claim "
                               "(killed or stalled before its first heartbeat)")
    requeue(record, by, now)
