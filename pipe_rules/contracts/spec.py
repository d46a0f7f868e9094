"""TaskSpec: the immutable, self-contained description of one task, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import SpecError
from pipe_rules.contracts.ids import check_safe_id
from pipe_rules.contracts.validation import first_error

SPEC_SCHEMA_VERSION = 1

FAMILIES: tuple[str, ...] = (
    "conf_opt",
    "conf_sp",
    "ts_guess_batch_method",
    "ts_opt",
    "species_sp",
    "species_freq",
    "irc",
    "rotor_scan_1d",
)
OWNER_TYPES = ("species", "reaction")
# What must be the same for every task of one run (ARC's batching key): staging, the planner and
# RunConfig.homogeneity_key all use these fields.
HOMOGENEITY_FIELDS = ("family", "engine", "level", "cores", "memory_mb", "walltime_min")


def fingerprint(family: str, engine: str, level: str, options: dict, payload: dict) -> str:
    """sha256 over the computational input only (not ids or ingestion metadata)."""
    canonical = json.dumps(
        {"family": family, "engine": engine, "level": level.lower(), "options": options, "payload": payload},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    family: str
    owner_type: str
    owner_key: str
    engine: str
    level: str
    cores: int
    memory_mb: int
    walltime_min: int
    input_payload: dict[str, Any]
    ingestion_metadata: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    schema_version: int = SPEC_SCHEMA_VERSION

    @classmethod
    def create(cls, **kwargs: Any) -> "TaskSpec":
        """Build a spec, compute its fingerprint and validate it (producers always validate)."""
        kwargs.setdefault("ingestion_metadata", {})
        kwargs.setdefault("options", {})
        kwargs["fingerprint"] = fingerprint(
            kwargs["family"], kwargs["engine"], kwargs["level"], kwargs["options"], kwargs["input_payload"]
        )
        spec = cls(**kwargs)
        spec.validate()
        return spec

    @property
    def homogeneity_key(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HOMOGENEITY_FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """Shallow (payloads are not copied): asdict's deep copy dominated staging time."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, path: Path | None = None) -> None:
        validate_spec_dict(self.as_dict(), path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> "TaskSpec":
        """Parse and validate; a spec that fails here is never executed."""
        validate_spec_dict(data, path)
        return cls(**data)


def validate_spec_dict(data: Any, path: Path | None = None) -> None:
    """Schema check plus the checks a schema cannot express; raise SpecError naming the field."""
    if isinstance(data, dict) and "task_id" in data:
        check_safe_id(data["task_id"], "task_id", path)
    problem = first_error("task_spec", data)
    if problem:
        field_name, message = problem
        raise SpecError(message, path=path, field=field_name)
    xyz = data["input_payload"].get("xyz")
    if xyz is not None and len(xyz["symbols"]) != len(xyz["coords"]):
        raise SpecError(
            f"{len(xyz['symbols'])} symbols but {len(xyz['coords'])} coordinate rows",
            path=path,
            field="input_payload.xyz",
        )
    expected = fingerprint(data["family"], data["engine"], data["level"], data["options"], data["input_payload"])
    if data["fingerprint"] != expected:
        raise SpecError("does not match the spec's content (the spec was edited after staging)",
                        path=path, field="fingerprint")
