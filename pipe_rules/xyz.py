"""ARC's xyz dict ({'symbols', 'isotopes', 'coords'}, Angstrom) from text, and its checks. No RDKit."""

from __future__ import annotations

from typing import Any

# Most common isotope mass numbers, for ARC's `isotopes` field.
_ISOTOPES = {"H": 1, "He": 4, "Li": 7, "Be": 9, "B": 11, "C": 12, "N": 14, "O": 16, "F": 19, "Ne": 20,
             "Na": 23, "Mg": 24, "Al": 27, "Si": 28, "P": 31, "S": 32, "Cl": 35, "Ar": 40, "K": 39,
             "Ca": 40, "Br": 79, "I": 127, "Xe": 132}


def xyz_dict(symbols: list[str], coords: list[list[float]]) -> dict[str, Any]:
    return {"symbols": list(symbols), "isotopes": [_ISOTOPES.get(s, 0) for s in symbols],
            "coords": [[float(c) for c in row] for row in coords]}


def xyz_dict_from_text(text: str) -> dict[str, Any]:
    """Parse 'El x y z' lines, with or without the two-line xyz header."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if lines and lines[0].isdigit():
        lines = lines[2:]
    symbols, coords = [], []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 4:
                raise ValueError
            coords.append([float(v) for v in parts[1:]])
        except ValueError:
            raise ValueError(f"xyz line {number} {line!r} is not 'Element x y z'") from None
        symbols.append(parts[0].capitalize())
    result = xyz_dict(symbols, coords)
    validate_xyz_dict(result)
    return result


def validate_xyz_dict(xyz: Any) -> None:
    if not isinstance(xyz, dict) or "symbols" not in xyz or "coords" not in xyz:
        raise ValueError("an xyz geometry needs 'symbols' and 'coords'")
    if not xyz["symbols"]:
        raise ValueError("the xyz geometry has no atoms")
    if len(xyz["symbols"]) != len(xyz["coords"]):
        raise ValueError(f"xyz has {len(xyz['symbols'])} symbols but {len(xyz['coords'])} coordinate rows")
    for symbol in xyz["symbols"]:
        if not isinstance(symbol, str) or not symbol.isalpha() or len(symbol) > 2:
            raise ValueError(f"{symbol!r} is not an element symbol")
