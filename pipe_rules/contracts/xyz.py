"""ARC xyz dicts ({'symbols', 'isotopes', 'coords'}, Angstrom): from text, checked, to ASE.

No RDKit here, and ASE only inside `atoms_from_xyz_dict`: parsing a user's xyz block or checking a
spec must stay cheap for the CLI and for workers of the noop engine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ase import Atoms

_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm "
    "Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No "
    "Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og").split()
# Mass number of each element's most common isotope (RDKit's periodic table), for ARC's `isotopes`.
_ISOTOPES = dict(zip(_SYMBOLS, (
    1, 4, 7, 9, 11, 12, 14, 16, 19, 20, 23, 24, 27, 28, 31, 32, 35, 40, 39, 40, 45, 48, 51, 52, 55, 56,
    59, 58, 63, 64, 69, 74, 75, 80, 79, 84, 85, 88, 89, 90, 93, 98, 97, 102, 103, 106, 107, 114, 115,
    120, 121, 130, 127, 132, 133, 138, 139, 140, 141, 142, 145, 152, 153, 158, 159, 164, 165, 166, 169,
    174, 175, 180, 181, 184, 187, 192, 193, 195, 197, 202, 205, 208, 209, 209, 210, 222, 223, 226, 227,
    232, 231, 238, 236, 238, 241, 243, 247, 249, 252, 257, 258, 259, 262, 267, 268, 271, 270, 269, 278,
    281, 281, 285, 284, 289, 288, 293, 292, 294)))
COORD_DECIMALS = 6  # staged geometries: 1e-6 Angstrom is far below any force-field or QM precision


def _element(symbol: str) -> str | None:
    """'cl', 'CL' and 'Cl' all mean chlorine in xyz files; None if no element is spelled so."""
    spelled = symbol[:1].upper() + symbol[1:].lower()
    return spelled if spelled in _ISOTOPES else None


element_symbol = _element  # public name, for other readers of element symbols (adjacency lists)


def xyz_dict_from_atoms(symbols: list[str], coords: Any) -> dict[str, Any]:
    """ARC xyz dict with plain Python lists and floats, so it serialises to JSON unchanged."""
    xyz = {"symbols": [str(s) for s in symbols], "isotopes": [_ISOTOPES.get(str(s), 0) for s in symbols],
           "coords": [[float(c) for c in row] for row in coords]}
    validate_xyz_dict(xyz)
    return xyz


def atoms_from_xyz_dict(xyz: dict[str, Any]) -> Atoms:
    from ase import Atoms
    validate_xyz_dict(xyz)
    return Atoms(symbols=list(xyz["symbols"]), positions=[list(map(float, row)) for row in xyz["coords"]])


def xyz_dict_from_text(text: str) -> dict[str, Any]:
    """Parse 'El x y z' lines (Angstrom), bare or under the two-line xyz header (count, comment)."""
    lines = text.splitlines()
    numbered = [(n, line.strip()) for n, line in enumerate(lines, 1)]
    expected: int | None = None
    first = next((i for i, (_, line) in enumerate(numbered) if line), None)
    if first is not None and numbered[first][1].isdigit():
        expected = int(numbered[first][1])
        numbered = numbered[first + 2:]  # the line after the count is a free comment
    symbols: list[str] = []
    coords: list[list[float]] = []
    for number, line in numbered:
        if not line:
            continue
        parts = line.split()
        element = _element(parts[0]) if parts else None
        try:
            row = [float(v) for v in parts[1:]]
        except ValueError:
            row = []
        if len(parts) != 4 or element is None or not all(math.isfinite(v) for v in row) or len(row) != 3:
            raise ValueError(f"xyz line {number} {line!r} is not 'Element x y z' (an element symbol and "
                             "three coordinates in Angstrom)")
        symbols.append(element)
        coords.append(row)
    if not symbols:
        raise ValueError("the xyz text has no atom lines; give one 'Element x y z' line per atom")
    if expected is not None and expected != len(symbols):
        raise ValueError(f"the xyz header says {expected} atoms but {len(symbols)} atom lines follow; "
                         "fix the count on the first line or drop the two header lines")
    return xyz_dict_from_atoms(symbols, coords)


def validate_xyz_dict(xyz: Any) -> None:
    """Raise ValueError naming the first problem, so a bad geometry fails at staging, not in a worker."""
    if not isinstance(xyz, dict) or not {"symbols", "coords"} <= set(xyz):
        raise ValueError("an xyz geometry must be a mapping with 'symbols' and 'coords' (and optionally "
                         f"'isotopes'), got {type(xyz).__name__}" +
                         (f" with keys {sorted(xyz)}" if isinstance(xyz, dict) else ""))
    symbols, coords = xyz["symbols"], xyz["coords"]
    if not isinstance(symbols, (list, tuple)) or not isinstance(coords, (list, tuple)):
        raise ValueError("xyz 'symbols' and 'coords' must be lists")
    if not symbols:
        raise ValueError("the xyz geometry has no atoms")
    if len(symbols) != len(coords):
        raise ValueError(f"xyz has {len(symbols)} symbols but {len(coords)} coordinate rows; "
                         "give one [x, y, z] row per symbol")
    for index, (symbol, row) in enumerate(zip(symbols, coords)):
        if not isinstance(symbol, str) or symbol not in _ISOTOPES:
            raise ValueError(f"xyz atom {index}: {symbol!r} is not an element symbol (write e.g. 'C', 'Cl')")
        if (not isinstance(row, (list, tuple)) or len(row) != 3 or
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row)):
            raise ValueError(f"xyz atom {index} ({symbol}): coordinates {row!r} are not three finite numbers "
                             "(x, y, z in Angstrom)")
    isotopes = xyz.get("isotopes")
    if isotopes is not None:
        if not isinstance(isotopes, (list, tuple)) or len(isotopes) != len(symbols):
            raise ValueError(f"xyz 'isotopes' must list one mass number per atom ({len(symbols)}), "
                             f"got {isotopes!r}")
        bad = [i for i, m in enumerate(isotopes) if not isinstance(m, int) or isinstance(m, bool) or m < 0]
        if bad:
            raise ValueError(f"xyz atom {bad[0]}: isotope {isotopes[bad[0]]!r} is not a mass number "
                             "(a non-negative integer; 0 means unspecified)")


