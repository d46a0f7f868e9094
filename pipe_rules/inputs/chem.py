"""Staging chemistry with RDKit: molecules from SMILES, InChI or an RMG adjacency list, their
conformers, charge and multiplicity.

RDKit is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipe_rules.contracts.xyz import COORD_DECIMALS, xyz_dict_from_atoms

if TYPE_CHECKING:
    from rdkit import Chem


def _quiet() -> Any:
    """RDKit logs parse and force-field typing problems to stderr; ours are raised as errors instead."""
    from rdkit import rdBase
    return rdBase.BlockLogs()


def mol_from_smiles(smiles: str) -> Chem.Mol:
    from rdkit import Chem
    with _quiet():
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}; check it (e.g. in a structure editor) "
                         "or give the species an xyz geometry instead")
    return mol


def mol_from_inchi(inchi: str) -> Chem.Mol:
    """An InChI (RDKit's InChI reader), hydrogen atoms added after the heavy atoms."""
    from rdkit import Chem
    mol = None
    if isinstance(inchi, str) and inchi.strip().startswith("InChI="):
        with _quiet():
            mol = Chem.MolFromInchi(inchi.strip(), sanitize=True, removeHs=True, logLevel=None)
    if mol is None:
        hint = "" if isinstance(inchi, str) and inchi.strip().startswith("InChI=") else \
            "; an InChI starts with 'InChI=' (e.g. InChI=1S/CH4/h1H4)"
        raise ValueError(f"RDKit cannot parse InChI {inchi!r}{hint}")
    return Chem.AddHs(mol)


def mol_from_adjlist(text: str) -> Chem.Mol:
    """An RMG adjacency list, atoms in its order, hydrogen atoms as listed (none added)."""
    from rdkit import Chem

    from pipe_rules.inputs.adjlist import parse_adjlist

    adj = parse_adjlist(text)
    kinds = {"S": Chem.BondType.SINGLE, "D": Chem.BondType.DOUBLE, "T": Chem.BondType.TRIPLE,
             "Q": Chem.BondType.QUADRUPLE, "B": Chem.BondType.AROMATIC}
    mol = Chem.RWMol()
    for atom in adj.atoms:
        new = Chem.Atom(atom.element)
        new.SetFormalCharge(atom.charge)
        new.SetNumRadicalElectrons(atom.unpaired)
        new.SetNoImplicit(True)
        if atom.isotope:
            new.SetIsotope(atom.isotope)
        mol.AddAtom(new)
    for i, j, order in adj.bonds:
        mol.AddBond(i, j, kinds[order])
        if order == "B":
            bond = mol.GetBondBetweenAtoms(i, j)
            bond.SetIsAromatic(True)
            mol.GetAtomWithIdx(i).SetIsAromatic(True)
            mol.GetAtomWithIdx(j).SetIsAromatic(True)
    try:
        with _quiet():
            Chem.SanitizeMol(mol)
    except Exception as exc:  # noqa: BLE001 - RDKit raises several sanitisation exception types
        raise ValueError(f"RDKit refuses the adjacency list's molecule: {' '.join(str(exc).split())}") from None
    return mol.GetMol()


def charge_and_multiplicity(mol: Chem.Mol) -> tuple[int, int]:
    """Formal charge, and multiplicity = radical electrons + 1 (all radical electrons parallel)."""
    from rdkit import Chem
    return Chem.GetFormalCharge(mol), sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()) + 1


def charge_and_multiplicity_from_smiles(smiles: str) -> tuple[int, int]:
    """Formal charge, and multiplicity = radical electrons + 1: RDKit assumes all radical electrons are
    parallel, so '[CH2]' is a triplet and 'O=O' a singlet; give multiplicity explicitly when that is wrong."""
    return charge_and_multiplicity(mol_from_smiles(smiles))


def embed_conformers(smiles: str, n: int, seed: int = 42) -> list[dict[str, Any]]:
    """Up to `n` distinct conformer guesses, lowest force-field energy first, identical for a given seed.

    ETKDGv3 embeds `n` conformers, then MMFF94 optimises them (UFF where MMFF has no parameters). A
    conformer whose optimisation did not converge keeps its partly optimised geometry: it is a guess for
    the QM optimisation, which refines it anyway. A conformer no force field can set up keeps its embedded
    geometry and sorts last. Duplicates (force-field energies within 1e-4 kcal/mol and best heavy-atom RMSD
    below 0.1 Angstrom) are dropped; mirror-image conformers (e.g. butane gauche+/-) are both kept.
    """
    from rdkit import Chem

    return embed_mol(Chem.AddHs(mol_from_smiles(smiles)), n, seed, f"SMILES {smiles!r}")


def embed_mol(mol: Chem.Mol, n: int, seed: int = 42, what: str = "the molecule") -> list[dict[str, Any]]:
    """embed_conformers for a molecule that already has its hydrogen atoms (atom order kept)."""
    from rdkit import Chem

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of conformers must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"the conformer seed must be an integer >= 0 (negative means random in RDKit), got {seed!r}")
    mol = Chem.Mol(mol)
    mol.RemoveAllConformers()
    with _quiet():
        ids = _embed(mol, n, seed)
        if not ids:
            raise ValueError(f"RDKit could not embed a 3D geometry for {what}; try another seed "
                             "or give the species an xyz geometry")
        energies = _optimise(mol, ids)
    kept = _distinct(mol, sorted(ids, key=lambda c: (energies[c] is None, energies[c] or 0.0, c)), energies)
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    return [xyz_dict_from_atoms(symbols, mol.GetConformer(cid).GetPositions().round(COORD_DECIMALS).tolist())
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
