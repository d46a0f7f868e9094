"""The long-lived worker that a shard job runs: claim, execute, record, repeat, then linger.

One worker per shard job. It drains its own shard, steals from the others, and when every queue
is empty it keeps watching tasks other workers hold, for up to `linger_s`: if one of them stops
heart-beating (its array element was killed) the lease expires and this worker re-runs the task.
SIGTERM (walltime, scancel) interrupts the engine, hands the task back as retryable, and exits 143.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipe_rules.contracts.errors import OwnershipLost, StateError
from pipe_rules.execution.execute import OwnershipInterrupted, Terminated, execute
from pipe_rules.execution.heartbeat import Heartbeat
from pipe_rules.store.claims import TaskPicker
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.ledger import record_attempt
from pipe_rules.store.lifecycle import finish
from pipe_rules.store.locks import LockTimeout, set_soft_lease
from pipe_rules.store.reconcile import orphan_expired_inflight
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import IN_FLIGHT_TASK_STATES, TaskState
from pipe_rules.store.stranded import hand_back_unrecorded
from pipe_rules.store.task_files import write_result
from pipe_rules.store.taskstate import read_state

log = logging.getLogger(__name__)
EXIT_TERMINATED = 143
EXIT_IO_ERROR = 74  # EX_IOERR: Snakemake sees the shard job fail and may retry it elsewhere


@dataclass
class WorkerSummary:
    worker_id: str
    shard: str | None
    completed: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    exit_reason: str = "drained"

    def as_dict(self) -> dict:
        return asdict(self)


class _Signals:
    """Turn SIGTERM/SIGINT into `Terminated`, but only while the engine runs; otherwise just a flag,
    so a signal can never cut a state or result write in half. SIGUSR1 comes from this worker's own
    heartbeat thread when the running task was taken away (re-assigned after a stall, or cancelled):
    it interrupts the engine the same way (`OwnershipInterrupted`), and the worker goes on."""

    def __init__(self) -> None:
        self.stop = False
        self.in_engine = False
        self.running: str | None = None  # claim token of the task in the engine
        self.lost: str | None = None  # claim token the heartbeat found taken away
        self._previous: dict[int, object] = {}

    def _handle(self, signum, _frame) -> None:
        self.stop = True
        if self.in_engine:
            self.in_engine = False
            raise Terminated(f"received {signal.Signals(signum).name} (walltime or cancellation)")

    def _lost(self, _signum, _frame) -> None:
        if self.in_engine and self.lost is not None and self.lost == self.running:
            self.in_engine = False
            raise OwnershipInterrupted("the task was taken away from this worker (cancelled, or re-assigned "
                                       "after its lease expired); engine stopped")

    def ownership_lost(self, claim) -> None:
        """Called by the heartbeat thread: interrupt the engine if it still runs `claim`."""
        self.lost = claim.token
        if self.running == claim.token:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    @contextmanager
    def engine_window(self, claim=None):
        if self.stop:
            raise Terminated("stop requested before the engine started")
        self.running = claim.token if claim is not None else None
        if self.running is not None and self.lost == self.running:
            raise OwnershipInterrupted("the task was taken away before its engine started")
        self.in_engine = True
        try:
            yield
        finally:
            self.in_engine = False
            self.running = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        self._previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._lost)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def new_worker_id(shard: str | None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{shard or 'any'}:{uuid.uuid4().hex[:8]}"


def run_worker(run_dir: Path, shard: str | None = None, worker_id: str | None = None,
               max_tasks: int | None = None, linger: bool = True, install_signals: bool = True) -> WorkerSummary:
    layout = RunLayout(Path(run_dir).resolve())  # the engine runs with cwd = its attempt folder
    run = read_run(layout)
    set_soft_lease(run.lock_lease_s)  # the run's own lock settings, never this node's defaults
    summary = WorkerSummary(worker_id or new_worker_id(shard), shard)
    picker = TaskPicker(layout, shard, run.lock_mode, summary.worker_id, run.lease_s)
    signals = _Signals()
    if install_signals:
        signals.install()
    idle_since: float | None = None
    watch = _Watch()
    heartbeat = Heartbeat(layout, run.lock_mode, run.lease_s, run.heartbeat_s,
                          on_lost=signals.ownership_lost if install_signals else None)
    try:
        with heartbeat:
            while not signals.stop and (max_tasks is None or summary.completed + summary.failed < max_tasks):
                try:
                    claim = picker.next_claim()
                except StateError as exc:  # a corrupt state file: report it, leave it for `reconcile`
                    summary.errors.append(str(exc))
                    log.error("%s", exc)
                    continue
                except OSError as exc:  # disk full or a lost mount while claiming: stop, the task is re-queued
                    summary.errors.append(f"cannot claim a task: {exc}")
                    log.error("%s", summary.errors[-1])
                    summary.exit_reason = "io_error"
                    break
                if claim is None:
                    idle_since = idle_since or time.time()
                    if not linger:
                        break
                    keep, claim = _linger_once(layout, run, idle_since, picker, watch)
                    if not keep:
                        break
                    if claim is None:
                        continue
                idle_since = None
                heartbeat.track(claim)
                try:
                    outcome = execute(layout, run.run_id, claim, shard, guard=signals.engine_window(claim))
                finally:
                    heartbeat.track(None)
                if not _record_outcome(layout, run, claim, outcome, summary):
                    summary.exit_reason = "io_error"
                    break
    finally:
        signals.restore()
        summary.ended_at = time.time()
    if signals.stop:
        summary.exit_reason = "terminated"
    return summary


def _record_outcome(layout: RunLayout, run, claim, outcome, summary: WorkerSummary) -> bool:
    """result.json first, then the terminal state: a crash in between leaves a result to salvage.

    A result that cannot be written (disk full, quota) hands the task back as retryable with the
    OS error, and returns False: this worker stops rather than burn every task's retry budget on a
    full disk."""
    state, fclass, reason = outcome.state, outcome.failure_class, outcome.reason
    healthy = True
    try:
        write_result(layout.result(claim.task_id, claim.attempt_index), outcome.result)
        # after the result: the ledger never holds an attempt without one, and never takes the disk
        # space the state write below needs (best effort: a full disk does not fail the task)
        record_attempt(layout.root, claim.worker_id, claim.task_id, claim.attempt_index,
                       outcome.result.timings, outcome.result.resources, state.value)
    except OSError as exc:
        state, fclass, reason, healthy = TaskState.FAILED_RETRYABLE, "transient", f"os_error_{exc.errno}", False
        summary.errors.append(f"cannot write the result of {claim.task_id}: {exc}")
        log.error("%s", summary.errors[-1])
    try:
        record = finish(layout, claim, run.lock_mode, state, fclass, reason)
    except OwnershipLost as exc:
        summary.lost += 1
        log.warning("%s; its result stays in attempt %d for the record", exc, claim.attempt_index)
        return healthy
    except (OSError, StateError, LockTimeout) as exc:  # the state write failed too: the lease expiry re-queues it
        summary.errors.append(f"cannot record the end of {claim.task_id}: {exc}")
        log.error("%s", summary.errors[-1])
        hand_back_unrecorded(layout, claim)  # a claim never written down: back in the queue at once
        return False
    if outcome.terminated:
        summary.released += 1
    elif record.status is TaskState.COMPLETED:
        summary.completed += 1
    elif record.status is not TaskState.PENDING:
        summary.failed += 1
    return healthy


class _Watch:
    """Other workers' in-flight tasks and when each lease can expire at the earliest: a lingering
    worker reads each state once, then again only after that time (a heartbeat may have pushed it),
    not every task every round (K in-flight tasks watched for many rounds were O(K^2) reads).
    A task PENDING behind its in-flight token may be running under a claim not yet written down
    (store/lifecycle.py): it is handed on (claimed as stranded) only once it has looked so for a
    lease and the clock skew, timed from when this worker first saw it. An ended task is handed on
    at once (its stray token is dropped) and looked at again a heartbeat later if its token stays."""

    def __init__(self) -> None:
        self.due: dict[str, float] = {}
        self.pending_since: dict[str, float] = {}

    def expired(self, layout: RunLayout, run, names: list[str]) -> list[str]:
        now = time.time()
        self.due = {t: self.due[t] for t in names if t in self.due}
        self.pending_since = {t: self.pending_since[t] for t in names if t in self.pending_since}
        ready = set()
        for task_id in names:
            if self.due.get(task_id, 0.0) > now:
                continue
            try:
                state = read_state(layout, task_id)
            except StateError:  # reported by the full reconcile
                self.due[task_id] = now + run.heartbeat_s
                continue
            if state.status in IN_FLIGHT_TASK_STATES and state.lease_expires_at is not None:
                self.pending_since.pop(task_id, None)
                self.due[task_id] = state.lease_expires_at + run.clock_skew_s
            elif state.status is TaskState.PENDING:
                since = self.pending_since.setdefault(task_id, now)
                self.due[task_id] = since + run.lease_s + run.clock_skew_s
                if self.due[task_id] <= now:
                    self.due[task_id] = now + run.heartbeat_s
                    ready.add(task_id)
            else:
                self.due[task_id] = now + run.heartbeat_s
                ready.add(task_id)
        return [t for t in names if t in ready or self.due[t] <= now]


def _linger_once(layout: RunLayout, run, idle_since: float, picker: TaskPicker, watch: _Watch):
    """Wait a little while other workers hold tasks; re-queue expired ones, claim stranded ones.
    Returns (keep lingering?, a claim to run or None)."""
    try:
        inflight = os.listdir(layout.inflight_dir)
    except FileNotFoundError:
        inflight = []
    if not inflight or time.time() - idle_since > run.linger_s:
        return False, None
    due = watch.expired(layout, run, inflight)
    view = orphan_expired_inflight(layout, run, due)
    for task_id in view.stranded:
        claim = picker.claim_stranded(task_id)
        if claim is not None:
            return True, claim
    held = view.running + len(inflight) - len(due)  # not due yet: leases that cannot have expired
    if not view.requeued and not held and not view.stranded:
        return False, None  # only stray tokens of ended tasks (a listing may also lag): nothing to wait for
    if not view.requeued:
        time.sleep(min(run.heartbeat_s, 2.0))
    return True, None
