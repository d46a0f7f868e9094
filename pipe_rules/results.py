"""result.json: the durable, schema-versioned record of one task attempt."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import StateError
from .fsio import atomic_write_json, read_json
from .schemas import first_error

RESULT_SCHEMA_VERSION = 1
_VERSIONED = ("pipe_rules", "numpy", "ase", "tblite", "rdkit", "pyscf", "geometric", "cclib", "snakemake")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of what computed the result (recorded, not pinned)."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def scheduler_job_id() -> str | None:
    for var in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "PBS_JOBID", "JOB_ID", "CLUSTER_ID"):
        if os.environ.get(var):
            task = os.environ.get("SLURM_ARRAY_TASK_ID") or os.environ.get("SGE_TASK_ID") or os.environ.get("PBS_ARRAY_INDEX")
            return f"{os.environ[var]}_{task}" if task and task != "undefined" else os.environ[var]
    return None


@dataclass
class ResultRecord:
    run_id: str
    task_id: str
    attempt_index: int
    status: str
    outcome: str
    family: str
    owner_type: str
    owner_key: str
    engine: str
    level: str
    timings: dict[str, float]
    worker: dict[str, Any]
    ingestion_metadata: dict[str, Any] = field(default_factory=dict)
    engine_version: str = ""
    failure_class: str | None = None
    failure_reason: str | None = None
    engine_message: str | None = None
    energy_hartree: float | None = None
    geometry: dict | None = None
    converged: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    native_outputs: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=package_versions)
    schema_version: int = RESULT_SCHEMA_VERSION
    # Not part of result.json: (run folder, worker id) whose cost ledger gets this attempt's line
    # once the result is on disk (pipe_rules.cost), so the ledger never holds an attempt without a
    # result and never takes the disk space the state write after it needs.
    ledger: tuple[Path, str] | None = field(default=None, repr=False, compare=False, metadata={"stored": False})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("stored", True)}


def worker_identity(worker_id: str, shard: str | None) -> dict[str, Any]:
    return {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid(), "shard": shard,
            "scheduler_job_id": scheduler_job_id()}


def write_result(path: Path, record: ResultRecord) -> None:
    data = record.as_dict()
    problem = first_error("result", data)
    if problem:  # a bug in the worker, never the user's input: fail loudly
        raise StateError(f"result does not match its schema: {problem[1]}", path=path, field=problem[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)
    if record.ledger is not None:
        from .cost import record_attempt

        record_attempt(record.ledger[0], record.ledger[1], record.task_id, record.attempt_index, record.timings,
                       record.resources)


def read_result(path: Path) -> dict[str, Any]:
    data = read_json(path, "task result")
    problem = first_error("result", data)
    if problem:
        raise StateError(problem[1], path=path, field=problem[0])
    return data
