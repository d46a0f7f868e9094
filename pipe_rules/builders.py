"""Turn species (or an earlier run's records) into the TaskSpecs of one run, per family.

Task ids follow ARC's patterns ({label}_conf_opt_{i}, {label}_species_sp, ...), made safe.
Identity (conformer index) goes into ingestion_metadata, never into the payload, so identical
geometries get identical fingerprints and are computed once.
"""

from __future__ import annotations

from typing import Any, Iterator

from .config import Campaign, RunConfig, Species
from .errors import StagingError
from .ids import sanitize_label
from .spec import TaskSpec
from .xyz import validate_xyz_dict, xyz_dict_from_atoms, xyz_dict_from_text

CONFORMER_FAMILIES = ("conf_opt", "conf_sp")
SPECIES_FAMILIES = ("species_sp", "species_freq")


def _chem():
    from . import chem  # RDKit import costs ~0.3 s: only staging needs it
    return chem


def species_geometries(species: Species, count: int, seed: int) -> list[dict]:
    """Geometries of a species: the given xyz, or `count` RDKit conformers of its SMILES."""
    if species.xyz is not None:
        if isinstance(species.xyz, str):
            return [xyz_dict_from_text(species.xyz)]
        validate_xyz_dict(species.xyz)
        return [xyz_dict_from_atoms(species.xyz["symbols"], species.xyz["coords"])]
    return _chem().embed_conformers(species.smiles, count, seed)


def charge_multiplicity(species: Species) -> tuple[int, int]:
    charge, mult = 0, 1
    if species.smiles:
        charge, mult = _chem().charge_and_multiplicity_from_smiles(species.smiles)
    return (species.charge if species.charge is not None else charge,
            species.multiplicity if species.multiplicity is not None else mult)


def _spec(run: RunConfig, task_id: str, owner: str, payload: dict, meta: dict) -> TaskSpec:
    return TaskSpec.create(
        task_id=task_id, family=run.family, owner_type="species", owner_key=owner,
        engine=run.engine, level=run.level, cores=run.cores, memory_mb=run.memory_mb,
        walltime_min=run.walltime_min, input_payload=payload, ingestion_metadata=meta, options=dict(run.options),
    )


def specs_from_species(campaign: Campaign, run: RunConfig) -> Iterator[TaskSpec]:
    chosen = [s for s in campaign.species if run.species is None or s.label in run.species]
    for species in chosen:
        charge, mult = charge_multiplicity(species)
        safe = sanitize_label(species.label)
        if run.family in CONFORMER_FAMILIES:
            for index, xyz in enumerate(species_geometries(species, run.n_conformers, run.seed)):
                payload = {"xyz": xyz, "charge": charge, "multiplicity": mult}
                yield _spec(run, f"{safe}_{run.family}_{index}", species.label, payload,
                            {"conformer_index": index})
        elif run.family in SPECIES_FAMILIES:
            xyz = species_geometries(species, run.n_conformers, run.seed)[0]
            payload = {"xyz": xyz, "charge": charge, "multiplicity": mult}
            yield _spec(run, f"{safe}_{run.family}", species.label, payload, {})
        else:
            raise StagingError(f"staging family {run.family!r} from species is not supported yet",
                               path=campaign.source, field=f"runs.{run.name}.family")


def specs_from_records(campaign: Campaign, run: RunConfig, records: dict[str, Any]) -> Iterator[TaskSpec]:
    """Chain runs: conf_sp of every optimised conformer, species_* of the lowest one."""
    wanted = set(run.species) if run.species is not None else None
    for owner, record in sorted(records.get("owners", {}).items()):
        if wanted is not None and owner not in wanted:
            continue
        conformers = [c for c in record.get("conformers", []) if c.get("converged") and c.get("geometry")]
        if not conformers:
            continue
        safe = sanitize_label(owner)
        charge, mult = record["charge"], record["multiplicity"]
        if run.family == "conf_sp":
            for conf in conformers:
                payload = {"xyz": conf["geometry"], "charge": charge, "multiplicity": mult}
                yield _spec(run, f"{safe}_conf_sp_{conf['conformer_index']}", owner, payload,
                            {"conformer_index": conf["conformer_index"]})
        elif run.family in SPECIES_FAMILIES:
            best = min(conformers, key=lambda c: c["energy_hartree"])
            payload = {"xyz": best["geometry"], "charge": charge, "multiplicity": mult}
            yield _spec(run, f"{safe}_{run.family}", owner, payload,
                        {"from_conformer_index": best["conformer_index"]})
        else:
            raise StagingError(f"family {run.family!r} cannot take its input from_run",
                               path=campaign.source, field=f"runs.{run.name}.from_run")
