"""result.json: the durable, schema-versioned record of one task attempt."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import metadata
from typing import Any

RESULT_SCHEMA_VERSION = 1
_VERSIONED = ("pipe_rules", "numpy", "ase", "tblite", "rdkit", "pyscf", "geometric", "cclib", "snakemake",
              "threadpoolctl")


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

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
