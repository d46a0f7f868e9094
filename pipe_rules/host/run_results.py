"""What PipeAPI.collect returns: a run's records as typed, frozen results for a host program (a failed
task is the model failed.jsonl is checked against, contracts.records.FailedTask)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipe_rules.contracts.records import FailedTask
from pipe_rules.store.layout import RunLayout


@dataclass(frozen=True)
class ConformerRecord:
    conformer_index: int | None
    task_id: str
    status: str
    converged: bool
    energy_hartree: float | None
    geometry: dict[str, Any] | None  # ARC xyz dict


@dataclass(frozen=True)
class OwnerRecord:
    """One species (or reaction) of the run; `fields` holds every field ingestion set, as ARC names them."""
    label: str
    owner_type: str
    charge: int | None
    multiplicity: int | None
    energy_hartree: float | None  # e_elect_hartree, else the lowest conformer's energy
    geometry: dict[str, Any] | None  # most_stable_xyz (conformer families)
    conformers: tuple[ConformerRecord, ...]
    fields: dict[str, Any]


@dataclass(frozen=True)
class RunResults:
    name: str
    run_id: str
    run_state: str
    family: str
    engine: str
    level: str
    task_counts: dict[str, int]
    owners: dict[str, OwnerRecord]
    failed: tuple[FailedTask, ...]
    records_path: str


def run_results(name: str, records: dict[str, Any], layout: RunLayout) -> RunResults:
    """The typed view of a run's records.json (checked by reporting.records_file first)."""
    owners = {}
    for label, owner in records["owners"].items():
        conformers = tuple(ConformerRecord(c.get("conformer_index"), c["task_id"], c["status"], bool(c["converged"]),
                                           c.get("energy_hartree"), c.get("geometry"))
                           for c in owner.get("conformers", ()))
        energies = [c.energy_hartree for c in conformers if c.energy_hartree is not None]
        energy = owner.get("e_elect_hartree", min(energies) if energies else None)
        owners[label] = OwnerRecord(label, owner["owner_type"], owner.get("charge"), owner.get("multiplicity"),
                                    energy, owner.get("most_stable_xyz"), conformers, owner)
    failed = tuple(FailedTask.model_validate(f) for f in records["failed"])  # the model failed.jsonl is read with
    return RunResults(name, records["run_id"], records["run_state"], records["family"], records["engine"],
                      records["level"], dict(records["task_counts"]), owners, failed, str(layout.records))
