"""run.json: what a run is (its homogeneity key and worker settings) and the state it is in.

Workers read their settings from here, never from the node's environment or the live config, so
a run keeps behaving as it was staged (ARC's scan resolution bug, F22).
"""

from __future__ import annotations

import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import atomic_write_json, read_json
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.locks import locked
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


def read_run(layout: RunLayout) -> RunRecord:
    path = layout.run_json
    data = read_json(path, "run metadata")
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


def write_run(layout: RunLayout, record: RunRecord) -> None:
    atomic_write_json(layout.run_json, record.as_dict(), pretty=True)


def update_run(layout: RunLayout, lock_mode: str, change) -> RunRecord:
    """Read-modify-write run.json under the run's lock."""
    with locked(layout.run_lock, lock_mode):
        record = read_run(layout)
        change(record)
        write_run(layout, record)
        return record


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "run.json").is_file()
