"""Pieces every spec builder uses: geometries and charge/multiplicity of a species, one spec of a
run, and the rotor-scan specs of a species (from species and from an earlier run alike)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.ids import sanitize_label
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.contracts.xyz import _SYMBOLS, validate_xyz_dict, xyz_dict_from_atoms, xyz_dict_from_text
from pipe_rules.inputs.campaign import Campaign, RunConfig, Species

CONFORMER_FAMILIES = ("conf_opt", "conf_sp")
_ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(_SYMBOLS, 1)}
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


def molecule(species: Species):
    """The RDKit molecule of the species' structure, hydrogen atoms included (ValueError if refused)."""
    chem = _chem()
    key, value = species.structure
    if key == "adjlist":
        return chem.mol_from_adjlist(value)
    if key == "inchi":
        return chem.mol_from_inchi(value)
    from rdkit import Chem

    return Chem.AddHs(chem.mol_from_smiles(value))


def species_geometries(species: Species, count: int, seed: int, conformer_family: bool = False) -> list[dict]:
    """Geometries of a species: its given conformers (conformer families), its xyz, its first given
    conformer, or `count` RDKit conformers of its structure."""
    if species.conformers and conformer_family:
        return [xyz_dict(c) for c in species.conformers]
    if species.xyz is not None:
        return [xyz_dict(species.xyz)]
    if species.conformers:
        return [xyz_dict(species.conformers[0])]
    key, value = species.structure
    return _chem().embed_mol(molecule(species), count, seed, f"{key} {value!r}")


def charge_multiplicity(species: Species) -> tuple[int, int]:
    """From the entry, else from its structure; a geometry alone gives charge 0 and, as ARC assumes,
    a singlet or a doublet by the parity of its electron count."""
    charge, mult = 0, 1
    structure = species.structure
    if structure is not None and (species.charge is None or species.multiplicity is None):
        if structure[0] == "adjlist":
            from pipe_rules.inputs.adjlist import parse_adjlist

            adj = parse_adjlist(structure[1])
            charge, mult = adj.charge, adj.multiplicity
        else:
            charge, mult = _chem().charge_and_multiplicity(molecule(species))
    charge = species.charge if species.charge is not None else charge
    if structure is None and species.multiplicity is None:
        geometry = species.xyz if species.xyz is not None else next(
            (g for g in species.conformers + species.ts_guesses if g is not None), None)
        if geometry is not None:
            electrons = sum(_ATOMIC_NUMBER[s] for s in xyz_dict(geometry)["symbols"]) - charge
            mult = 1 + electrons % 2
    return charge, species.multiplicity if species.multiplicity is not None else mult


def check_species(species: Species, parsed: set | None = None) -> None:
    """Everything staging will ask of the species' structure and geometries, as one ConfigError
    naming its file, field and label: run before anything is staged or submitted. `parsed`: the
    structures already found good (skipped; this one is added)."""
    key = None
    try:
        structure = species.structure
        if structure is not None:
            key = structure[0]
            if parsed is None or structure not in parsed:
                _parse(structure)
                if parsed is not None:
                    parsed.add(structure)
        for key, values in (("xyz", [species.xyz]), ("conformers", species.conformers),
                            ("ts_guesses", species.ts_guesses)):
            for index, value in enumerate(values):
                if value is not None:
                    sub = key if key == "xyz" else f"{key}.{index}"
                    try:
                        xyz_dict(value)
                    except ValueError:
                        key = sub
                        raise
    except ValueError as exc:
        path, field = species.where(key)
        raise ConfigError(f"species {species.label!r}: {exc}", path=path, field=field) from None


def _parse(structure: tuple[str, str]) -> None:
    """What molecule() refuses, without adding the hydrogen atoms (that cannot fail)."""
    key, value = structure
    chem = _chem()
    {"adjlist": chem.mol_from_adjlist, "inchi": chem.mol_from_inchi, "smiles": chem.mol_from_smiles}[key](value)


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
    for rotor_index, torsion in enumerate(species.torsions):
        if max(torsion) >= n_atoms:
            position = campaign.species.index(species)  # only on error: per species it is O(N^2)
            raise ConfigError(f"torsion {list(torsion)} indexes atom {max(torsion)} but the geometry has {n_atoms} "
                              "atoms (0-based; with SMILES, explicit H atoms follow the heavy atoms)",
                              path=campaign.source, field=f"species.{position}.torsions.{rotor_index}")
        payload = {"xyz": xyz, "charge": charge, "multiplicity": mult, "torsion": list(torsion),
                   "resolution_deg": run.scan_resolution_deg, "rotor_index": rotor_index}
        yield make_spec(run, f"{sanitize_label(species.label)}_scan_r{rotor_index}", species.label, payload,
                        {"rotor_index": rotor_index, **(meta or {})})
