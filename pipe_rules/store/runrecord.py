"""run.json: what a run is (its homogeneity key and worker settings) and the state it is in.

Workers read their settings from here, never from the node's environment or the live config, so
a run keeps behaving as it was staged (ARC's scan resolution bug, F22); that includes the lock
mode, chosen once at staging for the filesystem the run lives on. Stored as versions
`run.<generation>.json` (store/versioned.py), so updates from several nodes never lose one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field, StrictFloat, StrictInt, StrictStr, ValidationError

from pipe_rules.contracts.errors import StateError
from pipe_rules.contracts.models import FileModel, parse
from pipe_rules.store import versioned
from pipe_rules.store.fsio import parse_json
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.locks import SOFT_LEASE_S, locked
from pipe_rules.store.states import RunState, check_run_transition

RUN_SCHEMA_VERSION = 1


# The one source of run.json's shape: it checks every version read and generates
# contracts/schemas/run.schema.json. Assignments are not re-validated.
class RunRecord(FileModel):
    """One version of a run's record (<run>/run.<generation>.json): what the run is and the state it
    is in. Workers take their settings from here, never from the node they run on."""

    run_id: StrictStr
    campaign: StrictStr
    name: StrictStr
    key: dict[str, Any] = Field(description="The homogeneity key: family, engine, level, cores, memory_mb, "
                                "walltime_min, shared by every task of the run.")
    lock_mode: StrictStr = Field(description="Locking chosen at staging for the run folder's filesystem.")
    shards: StrictInt = Field(ge=1)
    max_attempts: StrictInt = Field(ge=1)
    lease_s: StrictFloat
    heartbeat_s: StrictFloat
    clock_skew_s: StrictFloat
    linger_s: StrictFloat
    lock_lease_s: StrictFloat = Field(SOFT_LEASE_S, description="Soft locks: a holder silent this long is "
                                      "taken for dead.")
    filesystem: dict[str, Any] = Field(default_factory=dict, description="What staging saw: type, mount "
                                       "options, why this lock mode.")
    state: RunState = RunState.CREATED
    n_tasks: StrictInt = 0
    created_at: StrictFloat = Field(default_factory=time.time)
    updated_at: StrictFloat = Field(default_factory=time.time)
    history: list[dict[str, Any]] = Field(default_factory=list, description="Every transition: from, to, at, "
                                          "reason.")
    schema_version: StrictInt = RUN_SCHEMA_VERSION

    @property
    def family(self) -> str:
        return self.key["family"]

    @property
    def engine(self) -> str:
        return self.key["engine"]

    def as_dict(self) -> dict[str, Any]:
        """Shallow, keys in field order (the versions are encoded at once, never kept)."""
        data = self.__dict__.copy()
        data["state"] = self.state.value
        return data

    def move(self, new: RunState, reason: str) -> None:
        if new is self.state:
            return
        check_run_transition(self.state, new)
        self.history.append({"from": self.state.value, "to": new.value, "at": time.time(), "reason": reason})
        self.state = new
        self.updated_at = time.time()


def _parse(raw: bytes, path: Path) -> RunRecord:
    """One pass from bytes to record; a file that fails it is parsed again the slow way, which
    words the error (corrupt JSON, not an object, or the field at fault)."""
    try:
        return RunRecord.model_validate_json(raw)
    except ValidationError:
        pass
    data = parse_json(raw, path, "run metadata")
    if not isinstance(data, dict):
        raise StateError("run metadata is not a JSON object", path=path)
    return parse(RunRecord, data, StateError, path)


def _missing(path: Path) -> StateError:
    return StateError("run metadata is missing", path=path)


def read_run(layout: RunLayout) -> RunRecord:
    got = versioned.read_bytes(layout.root, "run")
    if got is None:
        raise _missing(layout.run_json)
    return _parse(got[1], got[2])


def create_run(layout: RunLayout, record: RunRecord) -> bool:
    """Write the run's first version unless one exists (concurrent stagers); True if this call did."""
    return versioned.create(layout.root, "run", record.as_dict(), pretty=True)


def update_run(layout: RunLayout, lock_mode: str, change) -> RunRecord:
    """Read-modify-write the run record as one compare-and-set (under the run's lock)."""
    record, _ = versioned.update(layout.root, "run", lambda: locked(layout.run_lock, lock_mode), _parse,
                                 lambda rec: change(rec), pretty=True, missing=_missing)
    return record


def run_exists(layout: RunLayout) -> bool:
    return versioned.current(layout.root, "run") is not None


def is_run_dir(path: Path) -> bool:
    return run_exists(RunLayout(Path(path)))
