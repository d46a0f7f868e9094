"""The schema of ingested results (pydantic v2): the run summary, one owner record per line of
records.jsonl, one failed task per line of failed.jsonl.

Readers check every line they read against these models, so a file that was edited, truncated or
written by something else fails with one line naming the file, the line and the field, never a
KeyError deep inside a table. Writers build plain dicts (encoded with orjson, the hot path); the
tests check that what ingestion writes validates here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict

from pipe_rules.contracts.models import FileModel

RECORDS_SCHEMA_VERSION = 2


class Cost(FileModel):
    """Sums over every attempt that left a result.json (CPU-hours: cores x wall, and measured)."""

    tasks: int
    attempts: int
    cpu_hours: float
    cpu_hours_used: float
    task_wall_s: float
    peak_rss_mb: float | None


class RunCost(Cost):
    started_at: float | None
    ended_at: float | None
    elapsed_s: float | None
    attempt_wall_s_sample: list[float]  # at most SAMPLE attempts' durations, for the report's histogram
    attempt_wall_s_count: int  # how many attempts the sample was drawn from


class Conformer(FileModel):
    conformer_index: int | None
    task_id: str
    status: str
    converged: bool
    energy_hartree: float | None
    geometry: dict[str, Any] | None


class OwnerRecord(FileModel):
    """One species or reaction; the fields of its run's family (see the README's ingestion contract)."""

    owner_key: str
    owner_type: Literal["species", "reaction"]
    charge: int | None
    multiplicity: int | None
    cost: Cost
    conformers: list[Conformer] | None = None
    conformer_energies: list[float | None] | None = None
    lowest_conformer_index: int | None = None
    most_stable_xyz: dict[str, Any] | None = None
    e_elect_hartree: float | None = None
    e_elect: float | None = None
    sp_task_id: str | None = None
    freqs: list[float] | None = None
    n_imaginary: int | None = None
    zpe_hartree: float | None = None
    imaginary_flag: bool | None = None
    freq_task_id: str | None = None
    ts_guesses: dict[str, dict[str, Any]] | None = None
    chosen_ts_guess_index: int | None = None
    irc: dict[str, dict[str, Any]] | None = None
    rotors: dict[str, dict[str, Any]] | None = None
    tsg_guesses: list[dict[str, Any]] | None = None
    results: list[dict[str, Any]] | None = None


class FailedTask(FileModel):
    """One task that did not complete (a line of failed.jsonl); also what PipeAPI.collect returns for it."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    owner_key: str
    status: str
    attempt_index: int
    failure_class: str | None
    failure_reason: str | None
    engine_message: str | None
    last_geometry: dict[str, Any] | None
    ingestion_metadata: dict[str, Any]


class Summary(FileModel):
    """results/summary.json: the run-level part, written last (Snakemake's output of ingest_run)."""

    schema_version: Literal[2]
    run_id: str
    run_dir: str
    family: str
    engine: str
    level: str
    run_state: str
    ingested_at: float
    task_counts: dict[str, int]
    n_owners: int
    n_failed: int
    cost: RunCost
    records_file: str
    failed_file: str

