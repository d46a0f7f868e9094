"""Staging chemistry: ARC xyz dicts (text in, checks, ASE out) and RDKit conformers from SMILES.

RDKit and ASE are imported inside the functions that need them: parsing a user's xyz block or
checking a spec must stay cheap for the CLI and for workers of the noop engine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ase import Atoms
    from rdkit import Chem

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
_COORD_DECIMALS = 6  # staged geometries: 1e-6 Angstrom is far below any force-field or QM precision


def _element(symbol: str) -> str | None:
    """'cl', 'CL' and 'Cl' all mean chlorine in xyz files; None if no element is spelled so."""
    spelled = symbol[:1].upper() + symbol[1:].lower()
    return spelled if spelled in _ISOTOPES else None


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


def _quiet() -> Any:
    """RDKit logs parse and force-field typing problems to stderr; ours are raised as errors instead."""
    from rdkit import rdBase
    return rdBase.BlockLogs()


def _mol_from_smiles(smiles: str) -> Chem.Mol:
    from rdkit import Chem
    with _quiet():
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}; check it (e.g. in a structure editor) "
                         "or give the species an xyz geometry instead")
    return mol


def charge_and_multiplicity_from_smiles(smiles: str) -> tuple[int, int]:
    """Formal charge, and multiplicity = radical electrons + 1: RDKit assumes all radical electrons are
    parallel, so '[CH2]' is a triplet and 'O=O' a singlet; give multiplicity explicitly when that is wrong."""
    from rdkit import Chem
    mol = _mol_from_smiles(smiles)
    return Chem.GetFormalCharge(mol), sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()) + 1


def embed_conformers(smiles: str, n: int, seed: int = 42) -> list[dict[str, Any]]:
    """Up to `n` distinct conformer guesses, lowest force-field energy first, identical for a given seed.

    ETKDGv3 embeds `n` conformers, then MMFF94 optimises them (UFF where MMFF has no parameters). A
    conformer whose optimisation did not converge keeps its partly optimised geometry: it is a guess for
    the QM optimisation, which refines it anyway. A conformer no force field can set up keeps its embedded
    geometry and sorts last. Duplicates (force-field energies within 1e-4 kcal/mol and best heavy-atom RMSD
    below 0.1 Angstrom) are dropped; mirror-image conformers (e.g. butane gauche+/-) are both kept.
    """
    from rdkit import Chem

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of conformers must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"the conformer seed must be an integer >= 0 (negative means random in RDKit), got {seed!r}")
    mol = Chem.AddHs(_mol_from_smiles(smiles))
    with _quiet():
        ids = _embed(mol, n, seed)
        if not ids:
            raise ValueError(f"RDKit could not embed a 3D geometry for SMILES {smiles!r}; try another seed "
                             "or give the species an xyz geometry")
        energies = _optimise(mol, ids)
    kept = _distinct(mol, sorted(ids, key=lambda c: (energies[c] is None, energies[c] or 0.0, c)), energies)
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    return [xyz_dict_from_atoms(symbols, mol.GetConformer(cid).GetPositions().round(_COORD_DECIMALS).tolist())
            for cid in kept]


def _embed(mol: Chem.Mol, n: int, seed: int) -> list[int]:
    from rdkit.Chem import rdDistGeom
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if not ids:  # strained or unusual structures: random starting coordinates often succeed
        params.useRandomCoords = True
        ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=n, params=params))
    return ids


def _optimise(mol: Chem.Mol, ids: list[int]) -> dict[int, float | None]:
    """Force-field energy (kcal/mol) per conformer id; None where no force field could be set up."""
    from rdkit.Chem import rdForceFieldHelpers as ff
    if ff.MMFFHasAllMoleculeParams(mol):
        results = ff.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    elif ff.UFFHasAllMoleculeParams(mol):
        results = ff.UFFOptimizeMoleculeConfs(mol, maxIters=2000)
    else:
        return {cid: None for cid in ids}
    # MMFF/UFFOptimizeMoleculeConfs return (flag, energy) per conformer in conformer order; flag -1 = no setup
    return {conf.GetId(): (None if flag == -1 else float(energy))
            for conf, (flag, energy) in zip(mol.GetConformers(), results)}


def _distinct(mol: Chem.Mol, ordered: list[int], energies: dict[int, float | None]) -> list[int]:
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign
    heavy = Chem.RemoveHs(mol)  # a copy: GetBestRMS leaves its probe conformers aligned
    probe = heavy if heavy.GetNumAtoms() >= 3 else Chem.Mol(mol)  # H2, HCl...: too few heavy atoms

    def same(a: int, b: int) -> bool:
        ea, eb = energies[a], energies[b]
        if ea is None or eb is None or abs(ea - eb) >= 1e-4:
            return False
        return probe.GetNumAtoms() < 3 or rdMolAlign.GetBestRMS(probe, probe, prbId=a, refId=b) < 0.1

    kept: list[int] = []
    for cid in ordered:
        if not any(same(cid, k) for k in kept):
            kept.append(cid)
    return kept
