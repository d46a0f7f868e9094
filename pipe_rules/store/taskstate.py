"""The state of one task: the record, and the one read-check-write (a compare-and-set) every change goes through.

Stored as versions `state.<generation>.json` in the task folder (store/versioned.py): readers never
lock and see one whole version; a writer commits generation g+1 only if nobody else did, so the
ownership check and the write that depends on it are one atomic step on every filesystem, whether
or not the run's locks exclude across its clients.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from pipe_rules.contracts.errors import StateError
from pipe_rules.contracts.models import FileModel, parse
from pipe_rules.store import versioned
from pipe_rules.store.fsio import parse_json
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.locks import locked
from pipe_rules.store.states import IN_FLIGHT_TASK_STATES, TaskState, check_task_transition

STATE_SCHEMA_VERSION = 1
REPAIR_HINT = "; run 'pipe-rules reconcile' on the run folder to rebuild it from the attempt folders"


# The one source of a state file's shape: it checks every version read and generates
# contracts/schemas/task_state.schema.json. Assignments are not re-validated (the hot path);
# check_invariants runs before every write.
class TaskStateRecord(FileModel):
    """One version of a task's state (tasks/<bucket>/<task_id>/state.<generation>.json): written
    whole, once, never edited in place; the highest generation is the current state."""

    task_id: StrictStr
    shard: StrictStr
    status: TaskState = TaskState.PENDING
    attempt_index: StrictInt = Field(0, ge=0, description="Attempt the task is at (attempts/<n>/).")
    max_attempts: StrictInt = Field(3, ge=1)
    claimed_by: StrictStr | None = Field(None, description="Worker id of the claim's holder.")
    claim_token: StrictStr | None = Field(None, description="Proof of ownership: every change by the holder "
                                          "checks it; a takeover replaces it.")
    claimed_at: StrictFloat | None = None
    lease_expires_at: StrictFloat | None = Field(None, description="Epoch seconds; renewed by the heartbeat.")
    heartbeat_at: StrictFloat | None = None
    started_at: StrictFloat | None = None
    ended_at: StrictFloat | None = None
    failure_class: StrictStr | None = None
    failure_reason: StrictStr | None = None
    salvaged: StrictBool = Field(False, description="The result was recovered from a dead worker's attempt.")
    history: list[dict[str, Any]] = Field(default_factory=list, description="Every transition: from, to, at, by, "
                                          "attempt.")
    schema_version: StrictInt = STATE_SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        """Shallow (the history is not copied on every one of a task's writes); keys in field order."""
        data = self.__dict__.copy()
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> "TaskStateRecord":
        if not isinstance(data, dict):
            raise StateError("task state is not a JSON object", path=path)
        record = parse(cls, data, StateError, path)
        record.check_invariants(path)
        return record

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> "TaskStateRecord":
        """The hot path: one pass from bytes to record. A file that fails it is parsed again the
        slow way, which words the error (corrupt JSON, or the file and field at fault)."""
        try:
            record = cls.model_validate_json(raw)
        except ValidationError:
            return cls.from_dict(parse_json(raw, path, "task state", REPAIR_HINT), path)
        record.check_invariants(path)
        return record

    def check_invariants(self, path: Path | None = None) -> None:
        """The field rules every state must satisfy; checked on every read and every write."""
        def need(cond: bool, field_name: str, why: str) -> None:
            if not cond:
                raise StateError(why, path=path, field=field_name)

        need(isinstance(self.attempt_index, int) and self.attempt_index >= 0, "attempt_index", "must be >= 0")
        need(isinstance(self.max_attempts, int) and self.max_attempts >= 1, "max_attempts", "must be >= 1")
        if self.status in IN_FLIGHT_TASK_STATES:
            for name in ("claimed_by", "claim_token", "claimed_at", "lease_expires_at"):
                need(getattr(self, name) is not None, name, f"{self.status.value} needs {name}")
            need(self.lease_expires_at >= self.claimed_at, "lease_expires_at", "must not precede claimed_at")
        if self.status is TaskState.RUNNING:
            need(self.started_at is not None, "started_at", "RUNNING needs started_at")
        if self.status in (TaskState.COMPLETED, TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL, TaskState.CANCELLED):
            need(self.ended_at is not None, "ended_at", f"{self.status.value} needs ended_at")

    def move(self, new: TaskState, by: str, **updates: Any) -> None:
        """Apply one checked transition and remember it in the history."""
        check_task_transition(self.status, new)
        self.history.append(
            {"from": self.status.value, "to": new.value, "at": time.time(), "by": by, "attempt": self.attempt_index}
        )
        self.status = new
        for key, value in updates.items():
            if not hasattr(self, key):
                raise AttributeError(key)
            setattr(self, key, value)

    def clear_claim(self) -> None:
        self.claimed_by = self.claim_token = None
        self.claimed_at = self.lease_expires_at = self.heartbeat_at = None



def _parse(text: bytes, path: Path) -> TaskStateRecord:
    return TaskStateRecord.from_json(text, path)


def read_state(layout: RunLayout, task_id: str) -> TaskStateRecord:
    """Lock-free read of the current version: each version is written once, so it is always whole."""
    return read_current(layout, task_id)[0]


def read_current(layout: RunLayout, task_id: str) -> tuple[TaskStateRecord, int]:
    """read_state, and the generation it read."""
    got = versioned.read_bytes(layout.task_dir(task_id), "state")
    if got is None:
        raise StateError("task state is missing", path=layout.state(task_id))
    return _parse(got[1], got[2]), got[0]


def state_exists(layout: RunLayout, task_id: str) -> bool:
    return versioned.current(layout.task_dir(task_id), "state") is not None


def write_initial_state(layout: RunLayout, record: TaskStateRecord, fresh: bool = False) -> bool:
    """Create the first version unless any exists (two stagers of one run race here): the loser
    never overwrites a state a worker may already have moved on. True if this call created it.
    `fresh`: this process just made the task's folder (see versioned.create)."""
    record.check_invariants()
    return versioned.create(layout.task_dir(record.task_id), "state", record.as_dict(), fresh=fresh)


def write_rebuilt_state(layout: RunLayout, record: TaskStateRecord) -> bool:
    """Replace an unreadable current version by `record` (reconcile's repair), as a new version:
    False if someone else wrote a version meanwhile (then that one stands)."""
    folder = layout.task_dir(record.task_id)
    gen = versioned.current(folder, "state")
    if gen is None:
        return versioned.create(folder, "state", record.as_dict())
    return versioned.commit(folder, "state", gen, record.as_dict(), prune_old=False)


def read_version(layout: RunLayout, task_id: str, generation: int) -> TaskStateRecord | None:
    """One version of the task's state opened by name, no listing (None if that name does not exist):
    a claim reads generation 1, the version staging wrote, and then tries to commit generation 2."""
    folder = layout.task_dir(task_id)
    raw = versioned.read_version(folder, "state", generation)
    return None if raw is None else _parse(raw, versioned.path_of(folder, "state", generation))


def version_exists(layout: RunLayout, task_id: str, generation: int) -> bool:
    """One lookup by name (fresh on every filesystem measured, unlike a listing)."""
    return os.path.lexists(versioned.path_of(layout.task_dir(task_id), "state", generation))


def commit_next(layout: RunLayout, task_id: str, base: int, record: TaskStateRecord) -> bool:
    """Commit `record` as generation base+1 with no lock, no read and no listing: False if that name
    is taken (someone else wrote since `base`). Only for writers that know `base` is the newest
    version they could have seen and whose name base+1 can never have been pruned (the claim from a
    PENDING version, the owning worker's heartbeats and finish: see store/lifecycle.py)."""
    folder = layout.task_dir(task_id)
    record.check_invariants(versioned.path_of(folder, "state", base + 1))
    return versioned.commit_next(folder, "state", base, record.as_dict())


def remove_version(layout: RunLayout, task_id: str, generation: int) -> None:
    versioned.remove_version(layout.task_dir(task_id), "state", generation)


def _missing(path: Path) -> StateError:
    return StateError("task state is missing", path=path)


def update_state(
    layout: RunLayout,
    task_id: str,
    lock_mode: str,
    change: Callable[[TaskStateRecord], Any],
    on_commit: Callable[[int], Any] | None = None,
) -> tuple[TaskStateRecord, Any]:
    """Read, change and write the task's state as ONE compare-and-set (under the bucket's lock).

    `change` mutates the record (through `move`) and may raise to abort: then nothing is written.
    It returns a value passed back to the caller; returning the sentinel `NO_WRITE` skips the write.
    If another writer committed in between, `change` runs again on its version. `on_commit` is told
    the generation written. Task states are never pruned here (see commit_next).
    """
    def checked(record: TaskStateRecord):
        outcome = change(record)
        if outcome is not NO_WRITE:
            try:
                record.check_invariants()
            except StateError:  # name the current version (a listing) only when there is an error to report
                record.check_invariants(layout.state(task_id))
                raise
        return outcome

    return versioned.update(layout.task_dir(task_id), "state", lambda: locked(layout.state_lock(task_id), lock_mode),
                            _parse, checked, missing=_missing, prune_old=False, on_commit=on_commit)


NO_WRITE = versioned.NO_WRITE
