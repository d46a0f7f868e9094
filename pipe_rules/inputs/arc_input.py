"""Read the species of an ARC input file (input.yml), so a campaign can run on an existing ARC project.

Only `label`, `smiles` or `xyz`, `charge` and `multiplicity` of each entry under `species:` are read;
every other ARC key (project, level_of_theory, job_types, reactions, adjlist, ...) is ignored. Each
problem is one line naming the file, the species index and label, and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.xyz import validate_xyz_dict, xyz_dict_from_atoms, xyz_dict_from_text
from pipe_rules.inputs.yaml_loading import load_yaml

FIELDS = "label, smiles or xyz, charge, multiplicity"
MAX_LABEL = 96  # as the config schema


@dataclass(frozen=True)
class ArcSpecies:
    label: str
    smiles: str | None = None
    xyz: dict[str, Any] | None = None  # ARC xyz dict (symbols, isotopes, coords in Angstrom)
    charge: int | None = None  # None: from the SMILES (else 0), as ARC does
    multiplicity: int | None = None  # None: from the SMILES (else 1)

    def as_species_dict(self) -> dict[str, Any]:
        """The entry as the campaign config's `species` list takes it."""
        data: dict[str, Any] = {"label": self.label}
        data.update({k: v for k, v in (("smiles", self.smiles), ("xyz", self.xyz), ("charge", self.charge),
                                       ("multiplicity", self.multiplicity)) if v is not None})
        return data


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _one(entry: Any, index: int, path: Path | None) -> ArcSpecies:
    where = f"species.{index}"
    if not isinstance(entry, dict):
        raise ConfigError(f"must be a mapping with {FIELDS}, not {type(entry).__name__}", path=path, field=where)
    label = entry.get("label")
    if label is None:
        raise ConfigError("missing: every species needs a label", path=path, field=f"{where}.label")
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
        raise ConfigError(f"{label!r} is not a label (a non-empty string of at most {MAX_LABEL} characters)",
                          path=path, field=f"{where}.label")
    name = f"species {label!r}"
    smiles, xyz = entry.get("smiles"), entry.get("xyz")
    if smiles is not None and xyz is not None:
        raise ConfigError(f"{name} has both smiles and xyz: give one", path=path, field=where)
    if smiles is None and xyz is None:
        raise ConfigError(f"{name} has neither smiles nor xyz (adjlist, inchi and file paths are not read here): "
                          "give one", path=path, field=where)
    if smiles is not None and (not isinstance(smiles, str) or not smiles.strip()):
        raise ConfigError(f"{name}: {smiles!r} is not a SMILES string", path=path, field=f"{where}.smiles")
    geometry = None
    if xyz is not None and not isinstance(xyz, (str, dict)):
        raise ConfigError(f"{name}: must be an xyz text block ('Element x y z' lines, optionally under a count and "
                          f"a comment line) or an ARC xyz dict, not {type(xyz).__name__}", path=path,
                          field=f"{where}.xyz")
    if xyz is not None:
        try:
            if isinstance(xyz, str):
                geometry = xyz_dict_from_text(xyz)
            else:
                validate_xyz_dict(xyz)
                geometry = xyz_dict_from_atoms(xyz["symbols"], xyz["coords"])
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}", path=path, field=f"{where}.xyz") from None
    charge, multiplicity = entry.get("charge"), entry.get("multiplicity")
    if charge is not None and not _integer(charge):
        raise ConfigError(f"{name}: {charge!r} is not a charge (an integer)", path=path, field=f"{where}.charge")
    if multiplicity is not None and (not _integer(multiplicity) or multiplicity < 1):
        raise ConfigError(f"{name}: {multiplicity!r} is not a multiplicity (an integer >= 1)", path=path,
                          field=f"{where}.multiplicity")
    return ArcSpecies(label, smiles.strip() if smiles else None, geometry, charge, multiplicity)


def parse_arc_species(entries: Any, path: Path | None = None) -> list[ArcSpecies]:
    """ARC species records (dicts with label, smiles or xyz, charge, multiplicity), checked."""
    if not isinstance(entries, list):
        kind = "a mapping" if isinstance(entries, dict) else type(entries).__name__
        raise ConfigError(f"must be a list of species (each with {FIELDS}), not {kind}", path=path, field="species")
    species = [_one(entry, index, path) for index, entry in enumerate(entries)]
    first: dict[str, int] = {}
    for index, item in enumerate(species):
        if item.label in first:
            raise ConfigError(f"label {item.label!r} is used twice (also by species {first[item.label]})",
                              path=path, field=f"species.{index}.label")
        first[item.label] = index
    return species


def read_arc_input(path: Path | str) -> list[ArcSpecies]:

    path = Path(path)
    data = load_yaml(path, "the ARC input file")
    if not isinstance(data, dict):
        raise ConfigError("must be a YAML mapping (an ARC input file) with a 'species' list", path=path)
    if "species" not in data:
        raise ConfigError("missing: an ARC input file lists its species under 'species'", path=path, field="species")
    return parse_arc_species(data["species"], path)


def arc_species_dicts(path: Path | str) -> list[dict[str, Any]]:
    """The species of an ARC input file as campaign config entries (used by `arc_input:`)."""
    return [species.as_species_dict() for species in read_arc_input(path)]
