"""run.json: what a run is (its homogeneity key and worker settings) and the state it is in.

Workers read their settings from here, never from the node's environment or the live config, so
a run keeps behaving as it was staged (ARC's scan resolution bug, F22); that includes the lock
mode, chosen once at staging for the filesystem the run lives on. Stored as versions
`run.<generation>.json` (store/versioned.py), so updates from several nodes never lose one.
"""

from __future__ import annotations

import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import StateError
from pipe_rules.store import versioned
from pipe_rules.store.fsio import parse_json
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.locks import SOFT_LEASE_S, locked
from pipe_rules.store.states import RunState, check_run_transition

RUN_SCHEMA_VERSION = 1


@dataclass
class RunRecord:
    run_id: str
    campaign: str
    name: str
    key: dict[str, Any]
    lock_mode: str
    shards: int
    max_attempts: int
    lease_s: float
    heartbeat_s: float
    clock_skew_s: float
    linger_s: float
    lock_lease_s: float = SOFT_LEASE_S  # soft locks: a holder silent this long is taken for dead
    filesystem: dict[str, Any] = field(default_factory=dict)  # what staging saw: type, mount options, why this mode
    state: RunState = RunState.CREATED
    n_tasks: int = 0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    history: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = RUN_SCHEMA_VERSION

    @property
    def family(self) -> str:
        return self.key["family"]

    @property
    def engine(self) -> str:
        return self.key["engine"]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
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
    data = parse_json(raw, path, "run metadata")
    if not isinstance(data, dict):
        raise StateError("run metadata is not a JSON object", path=path)
    known = {f.name for f in fields(RunRecord)}
    required = {f.name for f in fields(RunRecord) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(data))
    unknown = sorted(set(data) - known)
    if unknown or missing:
        bad = (unknown or missing)[0]
        raise StateError("unknown field" if unknown else "missing field", path=path, field=bad)
    try:
        data["state"] = RunState(data["state"])
    except ValueError:
        raise StateError(f"{data['state']!r} is not a run state", path=path, field="state") from None
    return RunRecord(**data)


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
