"""Read the species and reactions of an ARC input file or an ARC restart.yml, so a campaign can run on
an existing ARC project (`arc_input:` in the campaign config, or pipe_rules.api.read_arc_input).

Species entries are read by `arc_species` (SMILES, InChI, adjacency lists, xyz blocks, dicts and
files, restart conformers, TS guesses, rotors). An entry that is only a `yml_path` (an Arkane YAML
file, as restart files list some species) is read from that file. Each `reactions` entry with TS
guesses (`ts_xyz_guess`, or ARC's shortcut `xyz`) becomes a TS species keyed by the reaction's ARC
label exactly ("A + B <=> C + D"), unless the file already has that reaction's TS species (its
`ts_label`, or a TS whose `rxn_label` is the reaction), which then gets the guesses. Reactions
without guesses give nothing here. Restart files may carry `!!python/tuple` tags: the loader
reads those as lists and refuses every other Python tag (a safe loader, never an unsafe one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.inputs.arc_species import MAX_LABEL, STRUCTURE, ArcSpecies, read_arc_species
from pipe_rules.inputs.reaction_multiplicity import reaction_multiplicity, reaction_sides
from pipe_rules.inputs.yaml_loading import load_yaml

__all__ = ["ArcSpecies", "arc_species_dicts", "parse_arc_species", "read_arc_input"]
ARKANE_KEYS = {"adjacency_list": "adjlist", "smiles": "smiles", "inchi": "inchi", "xyz": "xyz", "charge": "charge",
               "multiplicity": "multiplicity"}


def _arkane_entry(entry: dict, index: int, path: Path | None, base: Path) -> dict:
    """A species given only by `yml_path`: its label, structure and geometry from that Arkane YAML file."""
    target = (base / str(entry["yml_path"])).resolve()
    if not target.is_file():
        raise ConfigError(f"species {entry.get('label')!r}: its Arkane YAML file {str(target)!r} does not exist "
                          "(yml_path is read relative to this file)", path=path, field=f"species.{index}.yml_path")
    data = load_yaml(target, "the Arkane species file", tuples=True)
    if not isinstance(data, dict):
        raise ConfigError("is not an Arkane species YAML mapping", path=target)
    merged = {new: data[old] for old, new in ARKANE_KEYS.items() if data.get(old) is not None}
    return {**merged, **entry}


def parse_arc_species(entries: Any, path: Path | None = None, base: Path | None = None) -> list[ArcSpecies]:
    """ARC species records (dicts as ARC writes them), checked; `base` resolves geometry files."""
    base = base or (path.parent if path else Path.cwd())
    if not isinstance(entries, list):
        kind = "a mapping" if isinstance(entries, dict) else type(entries).__name__
        raise ConfigError(f"must be a list of species (each with a label and {STRUCTURE}), not {kind}", path=path,
                          field="species")
    species = []
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("yml_path") and not set(entry) - {"label", "yml_path"}:
            entry = _arkane_entry(entry, index, path, base)
        species.append(read_arc_species(entry, index, path, base))
    first: dict[str, int] = {}
    for index, item in enumerate(species):
        if item.label in first:
            raise ConfigError(f"label {item.label!r} is used twice (also by species {first[item.label]})",
                              path=path, field=f"species.{index}.label")
        first[item.label] = index
    return species


def _reaction_ts(entry: Any, index: int, species: list[ArcSpecies], path: Path, base: Path,
                 ts_of: dict[str, int]) -> tuple[int | None, ArcSpecies | None]:
    """(position of an existing TS species to extend, or None; the TS species with the guesses)."""
    where = f"reactions.{index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("label"), str) or not entry["label"].strip():
        raise ConfigError("every reaction needs a label such as 'A + B <=> C + D'", path=path, field=f"{where}.label")
    label = entry["label"]
    guesses = entry.get("ts_xyz_guess") or entry.get("xyz") or []
    key = "ts_xyz_guess" if entry.get("ts_xyz_guess") else "xyz"
    guesses = guesses if isinstance(guesses, list) else [guesses]
    if not guesses:
        return None, None
    if len(label) > MAX_LABEL:
        raise ConfigError(f"{label!r} is longer than {MAX_LABEL} characters", path=path, field=f"{where}.label")
    ts = read_arc_species({"label": label, "is_ts": True, key: guesses}, index, path, base, where=where,
                          name=f"reaction {label!r}")
    existing = ts_of.get(label) if ts_of.get(label) is not None else ts_of.get(str(entry.get("ts_label")))
    charge = entry.get("charge", 0)
    multiplicity = entry.get("multiplicity")
    if existing is None and multiplicity is None:
        try:
            multiplicity = reaction_multiplicity(*reaction_sides(label), {s.label: s for s in species})
        except ValueError as exc:
            raise ConfigError(f"reaction {label!r}: {exc}; give its multiplicity", path=path,
                              field=f"{where}.multiplicity") from None
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (charge, multiplicity)):
        raise ConfigError(f"reaction {label!r}: charge and multiplicity must be integers", path=path, field=where)
    return existing, ArcSpecies(label, charge=charge, multiplicity=multiplicity, ts_guesses=ts.ts_guesses)


def read_arc_file(path: Path | str) -> list[ArcSpecies]:
    """Species and reaction TS species of an ARC input or restart file."""
    path = Path(path)
    data = load_yaml(path, "the ARC input file", tuples=True)
    if not isinstance(data, dict):
        raise ConfigError("must be a YAML mapping (an ARC input file) with a 'species' list", path=path)
    if "species" not in data:
        raise ConfigError("missing: an ARC input file lists its species under 'species'", path=path, field="species")
    species = parse_arc_species(data["species"], path, path.parent)
    raw = {s.get("label"): s for s in data["species"] if isinstance(s, dict)}
    ts_of = {}
    for position, item in enumerate(species):
        entry = raw.get(item.label, {})
        if entry.get("is_ts"):
            ts_of[item.label] = position
            if entry.get("rxn_label"):
                ts_of[str(entry["rxn_label"])] = position
    reactions = data.get("reactions") or []
    if not isinstance(reactions, list):
        raise ConfigError("must be a list of reactions", path=path, field="reactions")
    for index, entry in enumerate(reactions):
        existing, ts = _reaction_ts(entry, index, species, path, path.parent, ts_of)
        if ts is None:
            continue
        if existing is None:
            if ts.label in {s.label for s in species}:
                raise ConfigError(f"reaction label {ts.label!r} is also a species label", path=path,
                                  field=f"reactions.{index}.label")
            species.append(ts)
        else:
            old = species[existing]
            species[existing] = ArcSpecies(**{**old.__dict__, "ts_guesses": old.ts_guesses + ts.ts_guesses})
    return species


def read_arc_input(path: Path | str) -> list[ArcSpecies]:
    return read_arc_file(path)


def arc_species_dicts(path: Path | str) -> list[dict[str, Any]]:
    """The species of an ARC input file as campaign config entries (used by `arc_input:`)."""
    return [species.as_species_dict() for species in read_arc_file(path)]
