"""Staging chemistry with RDKit: conformers from SMILES, charge and multiplicity."""

from __future__ import annotations

from rdkit import Chem, RDLogger
from rdkit.Chem import Descriptors, rdDistGeom, rdForceFieldHelpers, rdMolAlign

from .xyz import xyz_dict

RDLogger.DisableLog("rdApp.*")  # RDKit prints parse errors itself; ours name the species instead


def _mol(smiles: str) -> Chem.Mol:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    return Chem.AddHs(mol)


def charge_and_multiplicity_from_smiles(smiles: str) -> tuple[int, int]:
    mol = _mol(smiles)
    return Chem.GetFormalCharge(mol), Descriptors.NumRadicalElectrons(mol) + 1


def embed_conformers(smiles: str, count: int, seed: int = 42) -> list[dict]:
    """Up to `count` distinct conformers, pre-optimised with MMFF (UFF where MMFF has no parameters),
    sorted by force-field energy. Deterministic for a given seed."""
    mol = _mol(smiles)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = seed
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=count, params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(rdDistGeom.EmbedMultipleConfs(mol, numConfs=count, params=params))
    if not ids:
        raise ValueError(f"RDKit could not embed a 3D geometry for SMILES {smiles!r}")
    if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        results = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    else:
        results = rdForceFieldHelpers.UFFOptimizeMoleculeConfs(mol, maxIters=2000)
    energies = {cid: energy for cid, (_not_converged, energy) in zip(ids, results)}
    kept: list[int] = []
    heavy = Chem.RemoveHs(mol)
    for cid in sorted(ids, key=lambda c: energies[c]):
        if any(abs(energies[cid] - energies[k]) < 1e-3 and
               rdMolAlign.GetBestRMS(heavy, heavy, prbId=cid, refId=k) < 0.1 for k in kept):
            continue
        kept.append(cid)
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    return [xyz_dict(symbols, [list(p) for p in mol.GetConformer(cid).GetPositions().round(6)]) for cid in kept]
