"""Pieces every spec builder uses: geometries and charge/multiplicity of a species, one spec of a
run, and the rotor-scan specs of a species (from species and from an earlier run alike)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.ids import sanitize_label
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.contracts.xyz import validate_xyz_dict, xyz_dict_from_atoms, xyz_dict_from_text
from pipe_rules.inputs.campaign import Campaign, RunConfig, Species

CONFORMER_FAMILIES = ("conf_opt", "conf_sp")
SPECIES_FAMILIES = ("species_sp", "species_freq")


def _chem():
    from pipe_rules.inputs import chem
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
