"""One ARC species entry, as ARC writes it in an input file or a restart.yml (ARCSpecies.as_dict()),
turned into what pipe_rules stages: a structure, geometries, charge, multiplicity, torsions and TS
guesses. Every problem is one ConfigError naming the file, the field and the species.

Read: label; smiles, inchi, adjlist or mol (adjacency-list text or RMG's dict) for the structure;
xyz (a block, an ARC xyz dict, a file path, or a list of them), initial_xyz, final_xyz,
conformers (+ conformer_energies) for geometries; is_ts with xyz, ts_xyz_guess or restart
ts_guesses (opt_xyz, else initial_xyz; keyed by conformer_index); rotors_dict scans (1-based, as
ARC) for torsions; charge, multiplicity. Everything else ARC keeps there is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.xyz import validate_xyz_dict, xyz_dict_from_atoms, xyz_dict_from_text
from pipe_rules.inputs.adjlist import mol_dict_to_adjlist, parse_adjlist
from pipe_rules.inputs.geometry_files import looks_like_path, read_geometry_file

MAX_LABEL = 96  # as the config schema
STRUCTURE = "smiles, inchi, adjlist, mol or xyz (a block, an ARC xyz dict or a file)"


@dataclass(frozen=True)
class ArcSpecies:
    label: str
    smiles: str | None = None
    xyz: dict[str, Any] | None = None  # ARC xyz dict (symbols, isotopes, coords in Angstrom)
    charge: int | None = None  # None: from the structure (else 0), as ARC does
    multiplicity: int | None = None  # None: from the structure (else 1)
    inchi: str | None = None
    adjlist: str | None = None
    conformers: tuple[dict[str, Any], ...] = ()  # given conformers (conf_opt/conf_sp use them as they are)
    torsions: tuple[tuple[int, int, int, int], ...] = ()  # 0-based
    ts_guesses: tuple[dict[str, Any] | None, ...] = ()  # position = ts_guess_index; None: no guess there

    def as_species_dict(self) -> dict[str, Any]:
        """The entry as the campaign config's `species` list takes it."""
        data: dict[str, Any] = {"label": self.label}
        for key in ("smiles", "inchi", "adjlist", "xyz", "charge", "multiplicity"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.conformers:
            data["conformers"] = list(self.conformers)
        if self.torsions:
            data["torsions"] = [list(t) for t in self.torsions]
        if self.ts_guesses:
            data["ts_guesses"] = list(self.ts_guesses)
        return data


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Reader:
    def __init__(self, entry: dict, where: str, path: Path | None, base: Path, name: str):
        self.entry, self.path, self.base = entry, path, base
        self.where, self.name = where, name
        self.from_file: dict[str, int] = {}  # charge/multiplicity a Gaussian input gave

    def fail(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.name}: {message}", path=self.path,
                           field=f"{self.where}.{key}" if key else self.where)

    def geometry(self, value: Any, key: str) -> dict[str, Any]:
        try:
            if looks_like_path(value):
                read = read_geometry_file((self.base / value.strip()).resolve())
                self.from_file.update({k: v for k, v in (("charge", read.charge), ("multiplicity", read.multiplicity))
                                       if v is not None})
                return read.xyz
            if isinstance(value, str):
                return xyz_dict_from_text(value)
            if isinstance(value, dict):
                validate_xyz_dict({**value, "symbols": list(value.get("symbols", ())),
                                   "coords": [list(c) for c in value.get("coords", ())]})
                return xyz_dict_from_atoms(list(value["symbols"]), [list(c) for c in value["coords"]])
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
        raise self.fail(key, f"must be an xyz text block, an ARC xyz dict or a geometry file path, not "
                             f"{type(value).__name__}")

    def geometries(self, key: str) -> list[dict[str, Any]]:
        value = self.entry.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, (list, tuple)):
            return [self.geometry(item, f"{key}.{i}") for i, item in enumerate(value)]
        return [self.geometry(value, key)]

    def structure(self, is_ts: bool) -> dict[str, str]:
        entry = self.entry
        if isinstance(entry.get("adjlist"), str) and entry["adjlist"].strip():
            return {"adjlist": self.adjlist(entry["adjlist"], "adjlist")}
        mol = entry.get("mol")
        if mol and not is_ts:  # a TS's mol is a reaction graph (atom type R): its geometry is what counts
            try:
                text = mol if isinstance(mol, str) else mol_dict_to_adjlist(mol)
            except ValueError as exc:
                raise self.fail("mol", str(exc)) from None
            return {"adjlist": self.adjlist(text, "mol")}
        for key in ("inchi", "smiles"):
            value = entry.get(key)
            if value is not None:
                if not isinstance(value, str) or not value.strip():
                    raise self.fail(key, f"{value!r} is not a{'n InChI' if key == 'inchi' else ' SMILES'} string")
                return {key: value.strip()}
        return {}

    def adjlist(self, text: str, key: str) -> str:
        try:
            parse_adjlist(text)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None
        return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip()) + "\n"

    def torsions(self) -> tuple[tuple[int, int, int, int], ...]:
        rotors = self.entry.get("rotors_dict") or {}
        found = []
        for key in sorted(rotors, key=str) if isinstance(rotors, dict) else ():
            scan = rotors[key].get("scan") if isinstance(rotors[key], dict) else None
            if isinstance(scan, (list, tuple)) and len(scan) == 4 and all(_integer(a) and a >= 1 for a in scan):
                found.append(tuple(a - 1 for a in scan))  # ARC's scan atoms are 1-based
        return tuple(dict.fromkeys(found))

    def restart_ts_guesses(self) -> dict[int, dict[str, Any]]:
        guesses: dict[int, dict[str, Any]] = {}
        listed = self.entry.get("ts_guesses") or []
        if not isinstance(listed, list):
            raise self.fail("ts_guesses", "must be a list of TS guesses")
        indices = [g.get("conformer_index") if isinstance(g, dict) else None for g in listed]
        keyed = all(_integer(i) for i in indices) and len(set(indices)) == len(indices)
        for position, guess in enumerate(listed):
            if not isinstance(guess, dict):
                raise self.fail(f"ts_guesses.{position}", "must be a mapping (ARC's TSGuess.as_dict())")
            for key in ("opt_xyz", "initial_xyz"):
                if guess.get(key):
                    guesses[indices[position] if keyed else position] = self.geometry(
                        guess[key], f"ts_guesses.{position}.{key}")
                    break
        return guesses

    def number(self, key: str, minimum: int | None) -> int | None:
        value = self.entry.get(key)
        if value is None:
            return self.from_file.get(key)
        if not _integer(value) or (minimum is not None and value < minimum):
            what = "a charge (an integer)" if minimum is None else "a multiplicity (an integer >= 1)"
            raise self.fail(key, f"{value!r} is not {what}")
        return value


def read_arc_species(entry: Any, index: int, path: Path | None, base: Path, where: str | None = None,
                     name: str | None = None) -> ArcSpecies:
    """`where`/`name`: how errors name the entry (default species.<index>, species '<label>')."""
    if not isinstance(entry, dict):
        raise ConfigError(f"must be a mapping with a label and a structure ({STRUCTURE}), not "
                          f"{type(entry).__name__}", path=path, field=f"species.{index}")
    label = entry.get("label")
    if label is None:
        raise ConfigError("missing: every species needs a label", path=path, field=f"species.{index}.label")
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
        raise ConfigError(f"{label!r} is not a label (a non-empty string of at most {MAX_LABEL} characters)",
                          path=path, field=f"species.{index}.label")
    read = _Reader(entry, where or f"species.{index}", path, base, name or f"species {label!r}")
    is_ts = bool(entry.get("is_ts"))
    structure = read.structure(is_ts)
    given = read.geometries("xyz")
    final, initial = read.geometries("final_xyz"), read.geometries("initial_xyz")
    conformers = read.geometries("conformers")
    xyz, ts_guesses = None, ()
    if is_ts:
        guesses = dict(enumerate(given + read.geometries("ts_xyz_guess")))
        for index_, guess in read.restart_ts_guesses().items():
            guesses.setdefault(index_, guess)
        ts_guesses = tuple(guesses.get(i) for i in range(max(guesses) + 1)) if guesses else ()
        xyz = final[0] if final else None  # an optimised TS (restart): irc and species_* can use it
        if not ts_guesses and xyz is None and initial:
            ts_guesses = (initial[0],)
        if not ts_guesses and xyz is None:
            raise read.fail(None, "is a TS (is_ts) without a geometry: give xyz or ts_xyz_guess")
    else:
        if not conformers and len(given) > 1:
            conformers = given
        energies = entry.get("conformer_energies") or []
        lowest = None
        if conformers and isinstance(energies, list) and len(energies) == len(conformers):
            known = [(e, i) for i, e in enumerate(energies) if isinstance(e, (int, float))]
            lowest = conformers[min(known)[1]] if known else None
        xyz = (final or [None])[0] or lowest or (given[:1] or [None])[0] or (initial or [None])[0]
        if conformers and xyz is None:
            xyz = conformers[0]
        if xyz is None and not structure:
            raise read.fail(None, f"has no structure: give {STRUCTURE}")
    return ArcSpecies(label, smiles=structure.get("smiles"), xyz=xyz, charge=read.number("charge", None),
                      multiplicity=read.number("multiplicity", 1), inchi=structure.get("inchi"),
                      adjlist=structure.get("adjlist"), conformers=tuple(conformers), torsions=read.torsions(),
                      ts_guesses=ts_guesses)
