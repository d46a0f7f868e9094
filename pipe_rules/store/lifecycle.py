"""Every task transition the system makes, each one a compare-and-set on the task's state versions.

The ownership check (claim token) and the write that depends on it are one step: the write is the
exclusive creation of the next version, so a worker whose task was orphaned and re-claimed can
never overwrite the new owner's state (ARC's check-then-write race).

The drain path (claim, heartbeat, finish) takes no lock and, after the claim, reads nothing: the
claim of a first attempt reads the staged version 1 by name and writes no version at all, its
fence is the attempt folder it creates (store/attempts.py); the worker then remembers the version
its next write builds on (`Held`) and commits that from memory, the claim with it: its first
heartbeat writes RUNNING as version 2, or, for the many tasks that end sooner, its finish writes
the end as version 2. A task that is PENDING behind an in-flight token may therefore be running:
it counts as stranded only once it has looked so for a whole lease (worker.py's _Watch, and
store/stranded.py). A name taken means someone
else wrote (a cancel, a reconciler, another claimer): then the full locked read-change-commit
decides. That is exact because of the pruning rule: a task state's versions are never removed
except the owning worker's own heartbeat versions (not its claim version), so the name after a
PENDING version (a claim's base) or after the owner's latest version (its heartbeat's and finish's
base) is free only if nobody ever wrote it. Writers that read their base (cancel, reconcile) keep
the lock and the check after the commit (versioned.commit), which voids a commit onto a pruned
heartbeat name.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import uuid
from dataclasses import dataclass, field

from pipe_rules.contracts.errors import InvalidTransition, OwnershipLost, StateError
from pipe_rules.store.attempts import requeue_or_give_up, settle_unrecorded, take_attempt_folder
from pipe_rules.store.fsio import move_if_present as _move, remove_if_present, touch_new
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.states import IN_FLIGHT_TASK_STATES, TASK_TRANSITIONS, TERMINAL_TASK_STATES, TaskState
from pipe_rules.store.taskstate import (NO_WRITE, TaskStateRecord, commit_next, read_version, remove_version,
                                        update_state, version_exists)
from pipe_rules.store.versioned import KEEP_SUPERSEDED_S

S = TaskState
ENDED_STATES = frozenset({S.FAILED_ESS, S.FAILED_TERMINAL, S.CANCELLED})  # terminal, not COMPLETED


@dataclass
class Held:
    """What the owning worker knows of its task's state: the generation its next write builds on (the
    one it last committed, or the staged version 1 of a claim not yet written down) and the record
    it holds. `generation` None: someone else wrote; read before writing again."""
    generation: int | None
    record: TaskStateRecord
    claim_generation: int
    beats: list[tuple[int, float]] = field(default_factory=list)  # own heartbeat versions superseded, when
    guard: threading.Lock = field(default_factory=threading.Lock)  # the heartbeat thread and the worker


@dataclass(frozen=True)
class Claim:
    task_id: str
    token: str
    worker_id: str
    attempt_index: int
    held: Held | None = field(default=None, compare=False, repr=False)


def _touch(path) -> bool:
    try:
        return touch_new(path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return touch_new(path)


def restore_token(layout: RunLayout, record: TaskStateRecord) -> None:
    """After this process committed `record`, move the task's in-flight token to where that state
    wants it. Tokens are only ever moved (rename), never re-created beside an old one and then the
    old one deleted: between those two steps another worker could take the new token, and the
    deletion would then remove ITS in-flight token (a live task gone from `status` and from the
    lingering workers' watch). A move leaves the task exactly one token at every instant; a token
    that ends up in the wrong place still leads some worker to the task, which puts it right."""
    inflight = layout.inflight_token(record.task_id)
    if record.status is S.PENDING:
        if not _move(inflight, layout.pending_token(record.shard, record.task_id)):
            ensure_pending_token(layout, record)
    elif record.status in ENDED_STATES:
        if not _move(inflight, layout.ended_token(record.status.value, record.task_id)):
            _touch(layout.ended_token(record.status.value, record.task_id))
    elif record.status is S.COMPLETED:
        remove_if_present(inflight)  # terminal: nobody needs a token of it ever again


def ensure_pending_token(layout: RunLayout, record: TaskStateRecord, listed=None) -> bool:
    """A PENDING task with neither a pending nor an in-flight token (its stager or requeuer was killed
    before it made one) gets a pending token. Only creates (O_EXCL), never removes: at worst a task
    gets a second token, which the next claim folds into its one in-flight token. `listed`: a
    reconcile's TokenSnapshot.listed (store/token_snapshot.py); a token it lists needs no probe."""
    if record.status is not S.PENDING:
        return False
    pending = layout.pending_token(record.shard, record.task_id)
    if listed is not None and listed(pending):
        return False
    if os.path.lexists(pending) or os.path.lexists(layout.inflight_token(record.task_id)):
        return False
    return _touch(pending)


def claim_and_start(layout: RunLayout, task_id: str, lock_mode: str, worker_id: str, lease_s: float,
                    inflight_placed: bool = False, settle: bool = False) -> Claim | None:
    """PENDING -> CLAIMED -> RUNNING; None if the task is not PENDING any more, or its attempt's
    folder is taken and `settle` is False.

    A first attempt (version 1 PENDING and no version 2) is claimed by creating its attempt folder
    and nothing else: the RUNNING record stays in memory until the first heartbeat or the finish
    writes version 2 (see the module docstring). Every other claim (a retry, a taken folder) is a
    locked read-change-commit that writes RUNNING at once. `inflight_placed`: the caller already
    put the in-flight token in place (the picker moves the pending token there with one rename).
    `settle`: the caller knows the attempt's claimer had a whole lease to write its claim down (a
    lingering worker's stranded task): a taken folder is then salvaged or orphaned, not waited for."""
    token = uuid.uuid4().hex
    if not inflight_placed:
        touch_new(layout.inflight_token(task_id))
    made: set[int] = set()  # attempt folders this call created

    def start(record: TaskStateRecord) -> Claim:
        now = time.time()
        record.move(S.CLAIMED, worker_id, claimed_by=worker_id, claim_token=token, claimed_at=now,
                    lease_expires_at=now + lease_s, heartbeat_at=now, failure_class=None, failure_reason=None)
        record.move(S.RUNNING, worker_id, started_at=now)
        return Claim(task_id, token, worker_id, record.attempt_index)

    def change(record: TaskStateRecord):
        settled = False
        while record.status is S.PENDING and record.attempt_index not in made:
            if take_attempt_folder(layout, task_id, record.attempt_index):
                made.add(record.attempt_index)
            elif not settle:  # another claimer holds it, as far as this caller knows
                return NO_WRITE
            else:  # begun by a claimer that never wrote it down: salvage or orphan that attempt first
                settle_unrecorded(layout, record, worker_id)
                settled = True
        if record.status is not S.PENDING:
            return None if settled else NO_WRITE
        return start(record)

    try:
        first = read_version(layout, task_id, 1)  # a first attempt: the version staging wrote, by name
    except StateError:  # e.g. a corrupt version 1 that reconcile rebuilt as version 2: the full read decides
        first = None
    if (first is not None and first.status is S.PENDING and not version_exists(layout, task_id, 2)
            and take_attempt_folder(layout, task_id, first.attempt_index)):
        claim = start(first)
        return Claim(task_id, token, worker_id, claim.attempt_index, Held(1, first, 2))
    # a retry, a cancel, an old run's layout, or the folder taken: read the current version
    committed: list[int] = []
    record, claim = update_state(layout, task_id, lock_mode, change, on_commit=committed.append)
    if claim is NO_WRITE:
        if record.status in TERMINAL_TASK_STATES:  # a stray token of an ended task; in flight: not ours to touch
            repair_tokens(layout, record)
        return None
    if claim is None:  # an unrecorded attempt settled (salvaged, or out of retries): no claim
        restore_token(layout, record)
        return None
    return Claim(task_id, token, worker_id, claim.attempt_index, Held(committed[-1], record, committed[-1]))


def _commit_held(layout: RunLayout, claim: Claim, change) -> TaskStateRecord | None:
    """Apply `change` to the version this worker last committed and commit it as the next one, from
    memory (see the module docstring); None if the claim holds nothing known or the name is taken
    (someone else wrote: the caller reads and decides)."""
    held = claim.held
    if held is None:
        return None
    with held.guard:
        if held.generation is None:
            return None
        base, record = held.generation, held.record
        held.generation = None  # until this commit is known to have landed
        change(record)
        try:
            landed = commit_next(layout, claim.task_id, base, record)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not _make_room(layout, claim.task_id, held, base):
                raise
            landed = commit_next(layout, claim.task_id, base, record)
        if not landed:
            return None
        held.generation = base + 1
        if base > held.claim_generation:  # a heartbeat version of ours, superseded just now
            held.beats.append((base, time.monotonic()))
        _prune_beats(layout, claim.task_id, held)
        return record


def _make_room(layout: RunLayout, task_id: str, held: Held, base: int) -> bool:
    """Disk full: give up the lag margin rather than the write. Removes every own heartbeat version
    superseded, else version 1 (the staged PENDING one; no writer ever re-creates that name: staging
    creates only documents without any version). True if something was removed."""
    if held.beats:
        while held.beats:
            remove_version(layout, task_id, held.beats.pop(0)[0])
        return True
    if base > 1 and read_version(layout, task_id, 1) is not None:
        remove_version(layout, task_id, 1)
        return True
    return False


def _prune_beats(layout: RunLayout, task_id: str, held: Held) -> None:
    """Remove own heartbeat versions superseded KEEP_SUPERSEDED_S ago (a reader whose listing lags
    probes upward from the newest version it lists, so recent ones stay): a task heart-beating for
    hours keeps a few versions, not one per beat. The claim version is never removed: its name
    follows a PENDING version, which a stalled claimer may still try to create."""
    now = time.monotonic()
    while held.beats and now - held.beats[0][1] >= KEEP_SUPERSEDED_S:
        remove_version(layout, task_id, held.beats.pop(0)[0])


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

    if _commit_held(layout, claim, change) is None:  # someone else wrote: raises OwnershipLost if taken away
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
            requeue_or_give_up(record, claim.worker_id, now)
        else:
            record.clear_claim()

    record = _commit_held(layout, claim, change)
    if record is None:  # someone else wrote since this worker's last version: read it (raises OwnershipLost)
        record, _ = update_state(layout, claim.task_id, lock_mode, change)
    restore_token(layout, record)
    return record


def orphan_if_expired(layout: RunLayout, task_id: str, lock_mode: str, now: float, skew_s: float,
                      salvage, by: str = "reconciler") -> TaskStateRecord | None:
    """Reconciler: an in-flight task whose lease ran out is orphaned and re-queued.

    `salvage(attempt_index)` says that attempt already left a valid COMPLETED result.json (the
    worker died between writing it and the terminal state): then the task is completed, not re-run.
    It is asked inside the compare-and-set, about the attempt of the version being replaced, never
    about an attempt read before (which may have been re-queued and re-claimed since).
    Returns the new record, or None when nothing changed.
    """
    def change(record: TaskStateRecord):
        if record.status not in IN_FLIGHT_TASK_STATES or record.lease_expires_at + skew_s > now:
            return NO_WRITE
        if record.status is S.RUNNING and (salvage(record.attempt_index) if callable(salvage) else salvage):
            record.move(S.COMPLETED, by, ended_at=now, salvaged=True)
            record.clear_claim()
            return None
        record.move(S.ORPHANED, by, failure_class="transient",
                    failure_reason=f"lease of {record.claimed_by} expired (no heartbeat)")
        requeue_or_give_up(record, by, now)
        return None

    record, outcome = update_state(layout, task_id, lock_mode, change)
    if outcome is NO_WRITE:
        return None
    restore_token(layout, record)
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
    if outcome is True:  # CANCELLED is terminal: removing its tokens can never hide a live task
        if not _move(layout.pending_token(record.shard, task_id), layout.ended_token(S.CANCELLED.value, task_id)):
            restore_token(layout, record)
        remove_if_present(layout.inflight_token(task_id))
        return True
    return False


def requeue_stranded(layout: RunLayout, record: TaskStateRecord, listed=None) -> bool:
    """A PENDING task with an in-flight token (its claimer died before committing) gets its token
    moved back to its shard. A move, so if that claimer is alive after all and commits, its task
    keeps one token (now pending), which the next claim turns back into an in-flight one. `listed`:
    as in ensure_pending_token; a token absent from it is not tried."""
    if record.status is not S.PENDING:
        return False
    inflight = layout.inflight_token(record.task_id)
    if listed is not None and listed(inflight) is False:
        return False
    return _move(inflight, layout.pending_token(record.shard, record.task_id))


def repair_tokens(layout: RunLayout, record: TaskStateRecord, listed=None) -> None:
    """Make the queue tokens agree with a state read without the lock (reconcile, while workers may
    be live). Only what cannot race is done: a terminal state never changes again, so its stray
    tokens are removed and its marker made; a state that can still change only gets a token it
    lacks, never loses one (the read may already be out of date). `listed`: a reconcile's
    TokenSnapshot.listed; a token it lists as absent is not unlinked, one it lists is not made again
    (store/token_snapshot.py says why that is safe)."""
    task_id = record.task_id
    if record.status in TERMINAL_TASK_STATES:
        strays = [layout.pending_token(record.shard, task_id), layout.inflight_token(task_id)]
        strays += [layout.ended_token(state.value, task_id) for state in ENDED_STATES - {record.status}]
        for path in strays:
            if listed is None or listed(path) is not False:
                remove_if_present(path)
        if record.status in ENDED_STATES:
            marker = layout.ended_token(record.status.value, task_id)
            if listed is None or not listed(marker):
                _touch(marker)
    elif record.status is S.PENDING:
        ensure_pending_token(layout, record, listed)
    elif record.status in IN_FLIGHT_TASK_STATES:
        inflight = layout.inflight_token(task_id)
        if not (listed is not None and listed(inflight)) and not os.path.lexists(inflight):
            _touch(inflight)
