"""TaskSpec: the immutable, self-contained description of one task, and its fingerprint.

The model is the one source of spec.json's shape: it validates every spec read or written, and
generates contracts/schemas/task_spec.schema.json for other programs (`pipe-rules schemas`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictFloat, StrictInt, StrictStr, WrapValidator

from pipe_rules.contracts.errors import SpecError
from pipe_rules.contracts.ids import SAFE_ID_PATTERN, check_safe_id
from pipe_rules.contracts.models import FileModel, checked_as_given, parse

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
Family = Literal["conf_opt", "conf_sp", "ts_guess_batch_method", "ts_opt", "species_sp", "species_freq", "irc",
                 "rotor_scan_1d"]
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


class XyzGeometry(FileModel):
    """ARC's xyz dict, Angstrom."""

    symbols: list[StrictStr] = Field(min_length=1)
    isotopes: list[StrictInt] = None
    coords: list[Annotated[list[StrictFloat], Field(min_length=3, max_length=3)]]


class Payload(FileModel):
    """Execution inputs: geometry (ARC xyz dict), charge, multiplicity, family-specific settings."""

    model_config = ConfigDict(extra="allow")
    xyz: XyzGeometry = None
    charge: StrictInt = None
    multiplicity: StrictInt = Field(None, ge=1)


def _all_required(schema: dict, cls) -> None:
    """Every key is written to the file; the defaults only serve code that builds a spec."""
    schema["required"] = list(schema["properties"])
    for prop in schema["properties"].values():
        prop.pop("default", None)


class TaskSpec(FileModel):
    """One immutable, self-contained unit of work (tasks/<bucket>/<task_id>/spec.json). Everything the
    worker needs is here; nothing is re-read from the worker node's settings."""

    model_config = ConfigDict(frozen=True, json_schema_extra=_all_required)

    task_id: str = Field(pattern=SAFE_ID_PATTERN, strict=True, description="Unique in the run; also the task's folder name.")
    family: Family
    owner_type: Literal["species", "reaction"]
    owner_key: StrictStr = Field(min_length=1, max_length=256,
                                 description="ARC species or reaction label the result belongs to.")
    engine: StrictStr = Field(min_length=1)
    level: StrictStr = Field(min_length=1, description="Level of theory, e.g. GFN2-xTB or hf/sto-3g.")
    cores: StrictInt = Field(ge=1)
    memory_mb: StrictInt = Field(ge=1)
    walltime_min: StrictInt = Field(ge=1)
    # checked against Payload, kept as written: the fingerprint is over the mapping as given
    input_payload: Annotated[Payload, WrapValidator(checked_as_given)]
    ingestion_metadata: dict[str, Any] = Field(
        default_factory=dict, description="Identity for re-attaching results (conformer_index, rotor_index, ...); "
        "not part of the fingerprint.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Engine options shared by the whole run (fmax, max_steps...).")
    fingerprint: str = Field("", pattern="^[0-9a-f]{64}$", strict=True,
                             description="sha256 of the computational input; identical inputs are staged once.")
    schema_version: Literal[1] = Field(SPEC_SCHEMA_VERSION, description="Bumped on incompatible changes.")

    @classmethod
    def create(cls, **kwargs: Any) -> "TaskSpec":
        """Build a spec, compute its fingerprint and validate it (producers always validate)."""
        kwargs.setdefault("ingestion_metadata", {})
        kwargs.setdefault("options", {})
        kwargs.setdefault("schema_version", SPEC_SCHEMA_VERSION)
        kwargs["fingerprint"] = fingerprint(
            kwargs["family"], kwargs["engine"], kwargs["level"], kwargs["options"], kwargs["input_payload"]
        )
        return cls.from_dict(kwargs)

    @property
    def homogeneity_key(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HOMOGENEITY_FIELDS}

    def as_dict(self) -> dict[str, Any]:
        """Shallow (payloads are not copied): a deep copy per spec dominated staging time."""
        return {name: getattr(self, name) for name in _FIELDS}

    def validate(self, path: Path | None = None) -> None:
        validate_spec_dict(self.as_dict(), path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> "TaskSpec":
        """Parse and validate; a spec that fails here is never executed."""
        if isinstance(data, dict):
            if "task_id" in data:
                check_safe_id(data["task_id"], "task_id", path)
            missing = [name for name in _FIELDS if name not in data]
            if missing:  # a file carries every field; the model's defaults only serve `create`
                raise SpecError("is required", path=path, field=missing[0])
        spec = parse(cls, data, SpecError, path)
        _check_content(spec, path)
        return spec


_FIELDS = tuple(TaskSpec.model_fields)


def _check_content(spec: TaskSpec, path: Path | None) -> None:
    """What a schema cannot say: the geometry's rows match its symbols, and the fingerprint its content."""
    xyz = spec.input_payload.get("xyz")
    if xyz is not None and len(xyz["symbols"]) != len(xyz["coords"]):
        raise SpecError(f"{len(xyz['symbols'])} symbols but {len(xyz['coords'])} coordinate rows", path=path,
                        field="input_payload.xyz")
    expected = fingerprint(spec.family, spec.engine, spec.level, spec.options, spec.input_payload)
    if spec.fingerprint != expected:
        raise SpecError("does not match the spec's content (the spec was edited after staging)",
                        path=path, field="fingerprint")


def validate_spec_dict(data: Any, path: Path | None = None) -> None:
    """Raise SpecError naming the field unless `data` is a valid spec."""
    TaskSpec.from_dict(data, path)
