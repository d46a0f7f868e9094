"""Geometries given as a file path, as ARC accepts them: an .xyz file, a Gaussian input (.gjf, .com)
or a program's output (Gaussian .log/.out, ORCA .out/.log: the last geometry in it).

Outputs are read with cclib; ORCA logs cclib cannot parse (ORCA 6) with engines.orca_output. A
Gaussian input's charge and multiplicity line is returned too, so a species given only by its
.gjf needs nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_rules.contracts.xyz import element_symbol, xyz_dict_from_atoms, xyz_dict_from_text

SUFFIXES = (".xyz", ".gjf", ".com", ".log", ".out")


@dataclass(frozen=True)
class GeometryFile:
    xyz: dict[str, Any]
    charge: int | None = None
    multiplicity: int | None = None


def looks_like_path(value: Any) -> bool:
    """A one-word string ending in a geometry file suffix (an xyz block always has spaces)."""
    return isinstance(value, str) and len(value.split()) == 1 and value.strip().lower().endswith(SUFFIXES)


def read_geometry_file(path: Path) -> GeometryFile:
    """The geometry in `path`; ValueError (naming the file) if it cannot be read or holds none."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read geometry file {str(path)!r}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".xyz":
            return GeometryFile(xyz_dict_from_text(text))
        if suffix in (".gjf", ".com"):
            return _gaussian_input(text)
        return GeometryFile(_output_geometry(path, text))
    except ValueError as exc:
        raise ValueError(f"geometry file {str(path)!r}: {exc}") from None


def _gaussian_input(text: str) -> GeometryFile:
    """Link0 and route lines, a blank line, the title, a blank line, 'charge multiplicity', atoms."""
    sections, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            sections.append(current)
            current = []
    if current:
        sections.append(current)
    route = next((i for i, s in enumerate(sections) if any(line.startswith("#") for line in s)), None)
    if route is None or len(sections) < route + 3:
        raise ValueError("not a Gaussian input: no route line ('# ...'), title and molecule sections")
    molecule = sections[route + 2]
    first = molecule[0].split()
    if len(first) < 2 or not all(v.lstrip("+-").isdigit() for v in first[:2]):
        raise ValueError(f"the line after the title, {molecule[0]!r}, is not 'charge multiplicity'")
    symbols, coords = [], []
    for line in molecule[1:]:
        parts = line.replace(",", " ").split()
        symbol = element_symbol(parts[0].split("(")[0].split("-")[0]) if parts else None
        try:
            row = [float(v) for v in parts[-3:]]
        except ValueError:
            row = []
        if symbol is None or len(row) != 3 or len(parts) < 4:
            raise ValueError(f"atom line {line!r} is not 'Element x y z' (Cartesian coordinates; a Z-matrix is "
                             "not read)")
        symbols.append(symbol)
        coords.append(row)
    if not symbols:
        raise ValueError("the molecule section has no atom lines")
    return GeometryFile(xyz_dict_from_atoms(symbols, coords), int(first[0]), int(first[1]))


def _output_geometry(path: Path, text: str) -> dict[str, Any]:
    from pipe_rules.engines.orca_output import is_orca_output, read_orca_output

    try:
        from cclib.io import ccopen

        log = ccopen(str(path), loglevel=logging.CRITICAL)
        if log is None:
            raise ValueError("cclib does not recognise it as the output of a program it reads")
        try:
            data = log.parse()
        finally:
            log.inputfile.close()
        from ase.data import chemical_symbols

        return xyz_dict_from_atoms([chemical_symbols[int(z)] for z in data.atomnos], data.atomcoords[-1])
    except Exception as exc:  # noqa: BLE001 - cclib fails with many types on formats it lags behind
        if is_orca_output(text):
            out = read_orca_output(path)
            return xyz_dict_from_atoms(out.symbols, out.coords)
        raise ValueError(f"no geometry read from it ({type(exc).__name__}: {exc})") from None


def resolve_entry_files(entry: dict[str, Any], base: Path, path: Path | None, where: str) -> dict[str, Any]:
    """A config species entry with its geometry file paths (xyz, conformers, ts_guesses) read into
    xyz dicts, relative to `base`; a Gaussian input's charge/multiplicity fill unset ones. Also checks
    an adjacency list's syntax, so both fail here, before anything is staged."""
    from pipe_rules.contracts.errors import ConfigError

    entry = dict(entry)
    name = f"species {entry.get('label')!r}"

    def read(value: Any, key: str) -> Any:
        if not looks_like_path(value):
            return value
        try:
            found = read_geometry_file((base / value.strip()).resolve())
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}", path=path, field=f"{where}.{key}") from None
        for what in ("charge", "multiplicity"):
            if entry.get(what) is None and getattr(found, what) is not None:
                entry[what] = getattr(found, what)
        return found.xyz

    if "xyz" in entry:
        entry["xyz"] = read(entry["xyz"], "xyz")
    for key in ("conformers", "ts_guesses"):
        if isinstance(entry.get(key), list):
            entry[key] = [read(value, f"{key}.{i}") for i, value in enumerate(entry[key])]
    if entry.get("adjlist"):
        from pipe_rules.inputs.adjlist import parse_adjlist

        try:
            parse_adjlist(entry["adjlist"])
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}", path=path, field=f"{where}.adjlist") from None
    return entry
