"""Claims nobody wrote down: what happens to a first attempt's claim when its worker cannot finish it.

A first claim writes no state version (store/lifecycle.py); it is the moved in-flight token and
the attempt folder. If its worker cannot write its end (disk full, a lost mount) it hands the task
back as staged (`hand_back_unrecorded`); if the worker died or froze, whoever sees the token sit for
a lease settles the attempt and re-queues the task (`settle_stranded`, run by reconcile).
"""

from __future__ import annotations

import os
import shutil
import time

from pipe_rules.store.attempts import settle_unrecorded
from pipe_rules.store.fsio import move_if_present as _move
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import Claim, requeue_stranded, restore_token
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import has_completed_result
from pipe_rules.store.taskstate import NO_WRITE, TaskStateRecord, update_state, version_exists

S = TaskState


def hand_back_unrecorded(layout: RunLayout, claim: Claim) -> bool:
    """A claim never written down whose end could not be written either (disk full, a lost mount):
    put the task back as staged, so the next worker claims it at once rather than after a lease. Its
    attempt folder goes too, unless it holds a COMPLETED result (a later settle salvages that). False,
    and nothing done, once anyone wrote a version over the staged one."""
    if claim.held is None or version_exists(layout, claim.task_id, 2):
        return False
    folder = layout.attempt_dir(claim.task_id, claim.attempt_index)
    if has_completed_result(folder / "result.json"):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    if os.path.lexists(folder):
        return False
    return _move(layout.inflight_token(claim.task_id), layout.pending_token(claim.held.record.shard, claim.task_id))


def settle_stranded(layout: RunLayout, record: TaskStateRecord, lock_mode: str, min_age_s: float, listed=None,
                    by: str = "reconciler") -> tuple[TaskStateRecord, bool]:
    """A PENDING task whose in-flight token has sat there `min_age_s` (a lease and the clock skew):
    its claimer had a whole lease to write its claim down and did not, so it is dead or stalled.
    The attempt it began (if it made the folder) is salvaged or orphaned, and the token goes back to
    the queue. The token's age is its ctime, which the claim's rename updates on ext4 and GlusterFS
    (checked); where a filesystem keeps the staging time instead (sshfs), a live claimer can lose its
    task here: it then finds its next write's name taken and gives up (the commit is the guard).
    Returns the state as it stands after, and whether it may be held by a live claimer (PENDING
    behind an in-flight token younger than `min_age_s`: count it as running)."""
    if record.status is not S.PENDING:
        return record, False
    inflight = layout.inflight_token(record.task_id)
    if listed is not None and listed(inflight) is False:
        return record, False
    try:
        age = time.time() - os.lstat(inflight).st_ctime
    except FileNotFoundError:
        return record, False
    if age < min_age_s:
        return record, True
    if not os.path.isdir(layout.attempt_dir(record.task_id, record.attempt_index)):
        requeue_stranded(layout, record, listed)  # the claimer died before it made the folder
        return record, False
    attempt = record.attempt_index

    def change(current: TaskStateRecord):
        if current.status is not S.PENDING or current.attempt_index != attempt:
            return NO_WRITE
        settle_unrecorded(layout, current, by)
        return None

    settled, outcome = update_state(layout, record.task_id, lock_mode, change)
    if outcome is not NO_WRITE:
        restore_token(layout, settled)
    return settled, False
