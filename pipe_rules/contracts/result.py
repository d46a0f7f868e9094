"""result.json: the durable, schema-versioned record of one task attempt.

The model is the one source of result.json's shape: the worker's record is checked against it
before it is written, every reader checks a file against it, and it generates
contracts/schemas/result.schema.json for other programs (`pipe-rules schemas`).
"""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, WrapValidator

from pipe_rules.contracts.models import FileModel, checked_as_given

RESULT_SCHEMA_VERSION = 1
_VERSIONED = ("pipe_rules", "numpy", "ase", "tblite", "rdkit", "pyscf", "geometric", "cclib", "snakemake",
              "threadpoolctl", "pydantic", "psutil")


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


class Timings(FileModel):
    started_at: StrictFloat
    ended_at: StrictFloat
    wall_s: StrictFloat
    cpu_s: StrictFloat = Field(None, description="CPU seconds of the worker process (all threads) and its "
                               "waited-for child processes during the attempt.")


class Resources(FileModel):
    """What the attempt asked for and what it used. Fields other than cores, memory_mb and peak_rss_mb
    were added later and are optional."""

    cores: StrictInt = None
    memory_mb: StrictInt = None
    peak_rss_mb: StrictFloat = Field(None, description="Peak resident memory in MB: of this task alone when "
                                     "peak_rss_scope is 'task' (the worker's baseline included), else of the "
                                     "worker process so far.")
    peak_rss_scope: Literal["task", "process"] = Field(
        None, description="'task': the peak was reset when the task started (Linux /proc/self/clear_refs); "
        "'process': lifetime peak of the worker (ru_maxrss).")
    rss_end_mb: StrictFloat = Field(None, description="Resident memory of the worker right after the task: about "
                                    "its baseline when the task freed what it used.")
    cpu_hours: StrictFloat = Field(None, ge=0, description="cores x wall_s / 3600: what the allocation paid for "
                                   "this attempt.")
    cpu_hours_used: StrictFloat = Field(None, ge=0, description="Measured CPU time (worker and its child "
                                        "processes) / 3600.")


class WorkerIdentity(FileModel):
    id: StrictStr
    host: StrictStr
    pid: StrictInt
    shard: StrictStr | None = None
    scheduler_job_id: StrictStr | None = None


def _required_as_written(schema: dict, cls) -> None:
    """What every result.json has always carried is required; the later additions stay optional."""
    schema["required"] = [name for name in schema["properties"] if name not in _OPTIONAL]


_OPTIONAL = ("outcome", "ingestion_metadata", "engine_version", "engine_message", "native_outputs", "resources")


class ResultRecord(FileModel):
    """One record per task attempt (tasks/<bucket>/<task_id>/attempts/<n>/result.json), written by the
    worker with temp file + rename. Energies in Hartree, geometries as ARC xyz dicts in Angstrom."""

    model_config = ConfigDict(json_schema_extra=_required_as_written)

    run_id: StrictStr
    task_id: StrictStr
    attempt_index: StrictInt = Field(ge=0)
    status: Literal["COMPLETED", "FAILED"]
    outcome: Literal["COMPLETED", "FAILED_ESS", "FAILED_RETRYABLE", "FAILED_TERMINAL"] = Field(
        None, description="Task state the worker reported for this attempt.")
    family: StrictStr
    owner_type: StrictStr
    owner_key: StrictStr
    engine: StrictStr
    level: StrictStr
    # the blocks stay plain mappings (the worker's ledger and ingestion read them as such)
    timings: Annotated[Timings, WrapValidator(checked_as_given)]
    worker: Annotated[WorkerIdentity, WrapValidator(checked_as_given)]
    ingestion_metadata: dict[str, Any] = Field(default_factory=dict)
    engine_version: StrictStr = ""
    failure_class: Literal["ess", "transient", "terminal"] | None = None
    failure_reason: StrictStr | None = Field(None, description="Short keyword: scf_not_converged, max_opt_cycles, "
                                             "terminated, ...")
    engine_message: StrictStr | None = Field(None, description="The engine's own error text, for troubleshooting.")
    energy_hartree: StrictFloat | None = Field(None, description=(
        "Final energy; of a failed optimisation, the energy where it stopped (converged false)."))
    geometry: dict[str, Any] | None = Field(None, description=(
        "Final geometry; of a failed optimisation (BFGS, geomeTRIC, PySCF), where it stopped (converged false)."))
    converged: StrictBool = False
    data: dict[str, Any] = Field(default_factory=dict, description="Family-specific numbers (n_steps, frequencies, "
                                 "scan energies...).")
    native_outputs: list[StrictStr] = Field(default_factory=list,
                                            description="Engine files, relative to the attempt folder.")
    resources: Annotated[Resources, WrapValidator(checked_as_given)] = Field(default_factory=dict)
    versions: dict[str, StrictStr] = Field(default_factory=package_versions)
    schema_version: Literal[1] = RESULT_SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(ResultRecord.model_fields)
