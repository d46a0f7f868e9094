"""Turn species (or an earlier run's records) into the TaskSpecs of one run, per family.

Task ids follow ARC's patterns ({label}_conf_opt_{i}, {label}_species_freq, {label}_scan_r{ri},
{label}_ts_opt_{i}, {label}_irc_{direction}, ...), made safe. Identity (conformer, rotor, TS guess
index, IRC direction) goes into ingestion_metadata, so ingestion re-attaches results by identity,
never by list position; it stays out of the payload where the engine contract allows, so identical
geometries get identical fingerprints and are computed once.

A species that cannot give the run's family any input (no torsions, no TS guess...) is skipped and
named in `skipped`, which staging prints; a run where no species can is refused earlier, by
`family_inputs` at config time. TS families and reactions live in `builders_ts`, chaining from an
earlier run's records in `builders_chain`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .config import Campaign, RunConfig, Species
from .errors import ConfigError, StagingError
from .family_inputs import species_input_problem
from .ids import sanitize_label
from .spec import TaskSpec
from .xyz import validate_xyz_dict, xyz_dict_from_atoms, xyz_dict_from_text

CONFORMER_FAMILIES = ("conf_opt", "conf_sp")
SPECIES_FAMILIES = ("species_sp", "species_freq")


def _chem():
    from . import chem  # RDKit import costs ~0.3 s: only staging needs it
    return chem


def xyz_dict(value: Any) -> dict:
    """An xyz text block or ARC xyz dict from the config, as a validated xyz dict."""
    if isinstance(value, str):
        return xyz_dict_from_text(value)
    validate_xyz_dict(value)
    return xyz_dict_from_atoms(value["symbols"], value["coords"])


def species_geometries(species: Species, count: int, seed: int) -> list[dict]:
    """Geometries of a species: the given xyz, or `count` RDKit conformers of its SMILES."""
    if species.xyz is not None:
        return [xyz_dict(species.xyz)]
    return _chem().embed_conformers(species.smiles, count, seed)


def charge_multiplicity(species: Species) -> tuple[int, int]:
    charge, mult = 0, 1
    if species.smiles:
        charge, mult = _chem().charge_and_multiplicity_from_smiles(species.smiles)
    return (species.charge if species.charge is not None else charge,
            species.multiplicity if species.multiplicity is not None else mult)


def make_spec(run: RunConfig, task_id: str, owner: str, payload: dict, meta: dict,
              owner_type: str = "species") -> TaskSpec:
    return TaskSpec.create(
        task_id=task_id, family=run.family, owner_type=owner_type, owner_key=owner,
        engine=run.engine, level=run.level, cores=run.cores, memory_mb=run.memory_mb,
        walltime_min=run.walltime_min, input_payload=payload, ingestion_metadata=meta, options=dict(run.options),
    )


def scan_specs(campaign: Campaign, run: RunConfig, species: Species, xyz: dict, charge: int, mult: int,
               meta: dict | None = None) -> Iterator[TaskSpec]:
    """One rotor_scan_1d task per torsion of the species entry; rotor_index = its list position.
    The resolution is the run's, written into the payload (the worker never reads run settings)."""
    n_atoms = len(xyz["symbols"])
    position = campaign.species.index(species)
    for rotor_index, torsion in enumerate(species.torsions):
        if max(torsion) >= n_atoms:
            raise ConfigError(f"torsion {list(torsion)} indexes atom {max(torsion)} but the geometry has {n_atoms} "
                              "atoms (0-based; with SMILES, explicit H atoms follow the heavy atoms)",
                              path=campaign.source, field=f"species.{position}.torsions.{rotor_index}")
        payload = {"xyz": xyz, "charge": charge, "multiplicity": mult, "torsion": list(torsion),
                   "resolution_deg": run.scan_resolution_deg, "rotor_index": rotor_index}
        yield make_spec(run, f"{sanitize_label(species.label)}_scan_r{rotor_index}", species.label, payload,
                        {"rotor_index": rotor_index, **(meta or {})})


def specs_from_species(campaign: Campaign, run: RunConfig, skipped: list[str] | None = None) -> Iterator[TaskSpec]:
    from . import builders_ts

    skipped = skipped if skipped is not None else []
    if run.family == "ts_guess_batch_method":
        yield from builders_ts.reaction_specs(campaign, run)
        return
    chosen = [s for s in campaign.species if run.species is None or s.label in run.species]
    for species in chosen:
        problem = species_input_problem(run.family, species)
        if problem:
            skipped.append(f"{species.label}: {problem}")
            continue
        charge, mult = charge_multiplicity(species)
        safe = sanitize_label(species.label)
        if run.family in CONFORMER_FAMILIES:
            for index, xyz in enumerate(species_geometries(species, run.n_conformers, run.seed)):
                payload = {"xyz": xyz, "charge": charge, "multiplicity": mult}
                yield make_spec(run, f"{safe}_{run.family}_{index}", species.label, payload,
                                {"conformer_index": index})
        elif run.family in SPECIES_FAMILIES:
            xyz = species_geometries(species, run.n_conformers, run.seed)[0]
            payload = {"xyz": xyz, "charge": charge, "multiplicity": mult}
            yield make_spec(run, f"{safe}_{run.family}", species.label, payload, {})
        elif run.family == "rotor_scan_1d":
            xyz = species_geometries(species, 1, run.seed)[0]
            yield from scan_specs(campaign, run, species, xyz, charge, mult)
        elif run.family in ("ts_opt", "irc"):
            yield from builders_ts.ts_species_specs(campaign, run, species, charge, mult)
        else:
            raise StagingError(f"staging family {run.family!r} from species is not supported",
                               path=campaign.source, field=f"runs.{campaign.runs.index(run)}.family")


def specs_from_records(campaign: Campaign, run: RunConfig, records: dict[str, Any],
                       skipped: list[str] | None = None) -> Iterator[TaskSpec]:
    from .builders_chain import specs_from_records as chained
    return chained(campaign, run, records, skipped if skipped is not None else [])
