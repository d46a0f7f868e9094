"""Bring a run's files back in line: expired leases, lost queue tokens, corrupt state files, run state.

Workers call the cheap part (`orphan_expired_inflight`, over the in-flight folder only) while they
linger; `reconcile` scans the whole run and is what `pipe-rules reconcile` and ingestion run.
`pipe-rules reconcile` also sweeps temp files left by killed writers (`sweep_temps`): readers
ignore them, so ingestion skips that walk over every task folder.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import read_json, remove_if_present, stale_temp_reason
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import ENDED_STATES, orphan_if_expired, repair_tokens
from pipe_rules.store.locks import LockTimeout, set_soft_lease
from pipe_rules.store.manifest import shard_of
from pipe_rules.store.runrecord import RunRecord, read_run, update_run
from pipe_rules.store.states import (
    IN_FLIGHT_TASK_STATES,
    TERMINAL_RUN_STATES,
    TERMINAL_TASK_STATES,
    RunState,
    TaskState,
    run_state_from_counts,
    shown_status,
)
from pipe_rules.store.stranded import settle_stranded
from pipe_rules.store.task_files import has_completed_result
from pipe_rules.store.taskstate import TaskStateRecord, read_current, read_state, write_rebuilt_state
from pipe_rules.store.token_snapshot import TokenSnapshot

if TYPE_CHECKING:  # numpy: never imported by a worker, whose lingering uses this module
    from pipe_rules.store.final_versions import FinalVersions


@dataclass
class ReconcileReport:
    run_state: RunState
    counts: dict[str, int]
    orphaned: list[str] = field(default_factory=list)
    salvaged: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)
    removed_temps: list[str] = field(default_factory=list)  # "path: why it was stale"


def _expire(layout: RunLayout, run: RunRecord, task_id: str, now: float,
            final: FinalVersions | None = None) -> tuple[TaskStateRecord, bool]:
    """(the task's state, whether this call changed it): an in-flight task whose lease ran out is
    orphaned (or salvaged); any other is returned as read, so the caller reads it once. An ended
    task's generation is noted in `final` (for ingestion)."""
    state, generation = read_current(layout, task_id)
    if state.status in TERMINAL_TASK_STATES and final is not None:
        final.note(task_id, generation)
    if state.status not in IN_FLIGHT_TASK_STATES or state.lease_expires_at + run.clock_skew_s > now:
        return state, False
    changed = orphan_if_expired(layout, task_id, run.lock_mode, now, run.clock_skew_s,
                                lambda attempt: has_completed_result(layout.result(task_id, attempt)))
    return (changed, True) if changed is not None else (read_state(layout, task_id), False)


@dataclass
class InflightView:
    """What a lingering worker learns from the in-flight tokens (read by name, not from a listing)."""
    requeued: int = 0  # leases that expired: re-queued (or salvaged) now
    running: int = 0  # held by live workers: worth waiting for
    stranded: list[str] = field(default_factory=list)  # PENDING with an in-flight token: claim them


def orphan_expired_inflight(layout: RunLayout, run: RunRecord, inflight: list[str]) -> InflightView:
    """Re-queue in-flight tasks whose lease expired, drop stray tokens of ended tasks, and say which
    tasks are still held and which are PENDING behind an in-flight token."""
    view = InflightView()
    now = time.time()
    for task_id in inflight:
        try:
            state, changed = _expire(layout, run, task_id, now)
        except (StateError, LockTimeout, ValueError):
            continue  # reported by the full reconcile
        if changed:
            view.requeued += 1
        elif state.status in IN_FLIGHT_TASK_STATES:
            view.running += 1
        elif state.status is TaskState.PENDING:
            view.stranded.append(task_id)
        elif state.status in TERMINAL_TASK_STATES:
            repair_tokens(layout, state)  # ended: its token is stray, and nothing can revive the task
    return view


def _result_outcome(layout: RunLayout, task_id: str, attempt: int) -> str | None:
    try:
        return read_json(layout.result(task_id, attempt), "task result", own=True).get("outcome")
    except (StateError, AttributeError):
        return None


def _rebuild_state(layout: RunLayout, task_id: str, run: RunRecord, shard: str) -> TaskStateRecord:
    """Replace a corrupt state from what is still on disk, never re-opening an ended task:
    a COMPLETED result of any attempt wins, then a CANCELLED/FAILED_* marker, then the newest
    attempt's own terminal outcome (FAILED_ESS, FAILED_TERMINAL); otherwise the task is PENDING at
    the attempt after the newest folder (a worker may still be in that folder: the new attempt
    must not share it), or FAILED_TERMINAL if that attempt would exceed the budget."""
    attempts_dir = layout.task_dir(task_id) / "attempts"
    attempts = sorted((int(p) for p in os.listdir(attempts_dir) if p.isdigit()), reverse=True) \
        if attempts_dir.is_dir() else []
    record = TaskStateRecord(task_id=task_id, shard=shard, max_attempts=run.max_attempts)
    record.attempt_index = attempts[0] if attempts else 0
    now = time.time()
    ended = [s for s in ENDED_STATES if layout.ended_token(s.value, task_id).exists()]
    completed = next((a for a in attempts if has_completed_result(layout.result(task_id, a))), None)
    newest = _result_outcome(layout, task_id, attempts[0]) if attempts else None
    if completed is not None:
        record.status, record.attempt_index = TaskState.COMPLETED, completed
    elif ended:
        record.status = ended[0]
    elif newest in (TaskState.FAILED_ESS.value, TaskState.FAILED_TERMINAL.value):
        record.status = TaskState(newest)
    elif attempts and attempts[0] + 1 >= run.max_attempts:
        record.status = TaskState.FAILED_TERMINAL
    elif attempts:
        record.attempt_index = attempts[0] + 1
    if record.status is not TaskState.PENDING:
        record.started_at = record.ended_at = now
        record.failure_reason = "state rebuilt by reconcile"
        if record.status is TaskState.FAILED_TERMINAL and not ended and newest is None:
            record.failure_reason = (f"state rebuilt by reconcile; retry budget of {run.max_attempts} attempts "
                                     "spent")
    record.history.append({"from": "CORRUPT", "to": record.status.value, "at": now, "by": "reconcile",
                           "attempt": record.attempt_index})
    if not write_rebuilt_state(layout, record):  # someone wrote a new version meanwhile: it stands
        return read_state(layout, task_id)
    return record


def reconcile(layout: RunLayout, repair: bool = True, sweep_temps: bool = False,
              final: FinalVersions | None = None) -> ReconcileReport:
    """`final`: note there the version each ended task ended at (store/final_versions.py)."""
    run = read_run(layout)
    set_soft_lease(run.lock_lease_s)
    counts: Counter[TaskState] = Counter()
    report = ReconcileReport(RunState.CREATED, {})
    now = time.time()
    tokens = TokenSnapshot(layout, run.n_tasks)
    for bucket, task_id in layout.iter_task_ids(with_bucket=True):
        tokens.enter(bucket)  # before its states are read (store/token_snapshot.py)
        try:
            try:
                state, changed = _expire(layout, run, task_id, now, final)
            except LockTimeout:  # busy, not corrupt: count it as it reads now, repair nothing
                state, changed = read_state(layout, task_id), False
            if changed:
                (report.salvaged if state.salvaged else report.orphaned).append(task_id)
        except StateError as exc:
            shard = shard_of(layout, task_id) if repair else None  # read only here: 1M shards take 200 MB
            if shard is None:
                report.unrepairable.append(str(exc))
                continue
            state = _rebuild_state(layout, task_id, run, shard)
            report.repaired.append(task_id)
        held = state.status is TaskState.PENDING and tokens.listed(layout.inflight_token(task_id)) is True
        if repair:
            repair_tokens(layout, state, tokens.listed)
            if state.status is TaskState.PENDING:
                state, held = settle_stranded(layout, state, run.lock_mode, run.lease_s + run.clock_skew_s,
                                              tokens.listed)
                if state.salvaged:
                    report.salvaged.append(task_id)
        counts[shown_status(state.status, held)] += 1
    if repair:
        _drop_stale_inflight(layout)
    if repair and sweep_temps:
        report.removed_temps = sweep_stale_temps(layout, time.time())
    report.counts = {s.value: counts.get(s, 0) for s in TaskState}
    report.run_state = _update_run_state(layout, run, counts)
    return report


_NO_TEMPS = ("queue", "locks", "costs")  # written by O_EXCL creates and appends only
BROKEN_LOCK_AGE_S = 60.0  # set aside by a breaker that never got to unlink it (it blocks nothing)


def sweep_stale_temps(layout: RunLayout, now: float) -> list[str]:
    """Delete temp files whose writer is gone (see fsio.stale_temp_reason); never a live writer's."""
    removed = []
    for folder, subdirs, names in os.walk(layout.root):
        if folder == str(layout.root):
            subdirs[:] = [d for d in subdirs if d not in _NO_TEMPS]
        for name in names:
            if name.startswith(".") and name.endswith((".tmp", ".new")):
                path = Path(folder) / name
                why = stale_temp_reason(path, now)
                if why and remove_if_present(path):
                    removed.append(f"{path}: {why}")
    try:  # a soft-lock breaker killed between its rename and its unlink leaves `.<lock>.broken.<id>`
        broken = [e for e in os.scandir(layout.root / "locks") if e.name.startswith(".") and ".lock.broken." in e.name]
    except FileNotFoundError:
        broken = []
    for entry in broken:
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if age >= BROKEN_LOCK_AGE_S and remove_if_present(Path(entry.path)):
            removed.append(f"{entry.path}: a broken soft lock set aside {age:.0f} s ago")
    return removed


def _drop_stale_inflight(layout: RunLayout) -> None:
    try:
        names = os.listdir(layout.inflight_dir)
    except FileNotFoundError:
        return
    for task_id in names:
        try:
            state = read_state(layout, task_id)
        except (StateError, ValueError):
            continue
        if state.status in TERMINAL_TASK_STATES:  # an ended task never needs it; any other may, any moment
            repair_tokens(layout, state)


def _update_run_state(layout: RunLayout, run: RunRecord, counts: Counter) -> RunState:
    if run.state is RunState.CANCELLED:
        return run.state
    target = run_state_from_counts(dict(counts))
    if target is run.state:
        return target
    if run.state in TERMINAL_RUN_STATES and target is RunState.STAGED:
        return run.state

    def change(record: RunRecord) -> None:
        try:
            record.move(target, "reconcile")
        except StateError:
            pass

    return update_run(layout, run.lock_mode, change).state
