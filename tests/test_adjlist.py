"""RMG adjacency lists read without RMG (pipe_rules/inputs/adjlist.py) into RDKit molecules: each
accepted form gives the molecule its SMILES names, each malformed one its own line."""

from __future__ import annotations

import pytest
from rdkit import Chem

from pipe_rules.inputs.adjlist import parse_adjlist
from pipe_rules.inputs.chem import charge_and_multiplicity, embed_mol, mol_from_adjlist

GOOD = {
    # name: (adjacency list, canonical SMILES of the same molecule, multiplicity)
    "methylamine (ARC thermo_demo)": ("""1 C u0 p0 c0 {2,S} {3,S} {4,S} {5,S}
2 N u0 p1 c0 {1,S} {6,S} {7,S}
3 H u0 p0 c0 {1,S}
4 H u0 p0 c0 {1,S}
5 H u0 p0 c0 {1,S}
6 H u0 p0 c0 {2,S}
7 H u0 p0 c0 {2,S}""", "CN", 1),
    "NH2 radical, multiplicity line (ARC restart)": ("multiplicity 2\n1 N u1 p1 c0 {2,S} {3,S}\n2 H u0 p0 c0 {1,S}\n"
                                                     "3 H u0 p0 c0 {1,S}", "[NH2]", 2),
    "HNNO with charges c-1/c+1 (ARC yml_testing)": ("multiplicity 2\n1 O u0 p3 c-1 {2,S}\n2 N u1 p0 c+1 {1,S} {3,D}\n"
                                                    "3 N u0 p1 c0 {2,D} {4,S}\n4 H u0 p0 c0 {3,S}", "N=[N+][O-]", 2),
    "carbon monoxide, triple bond": ("1 C u0 p1 c-1 {2,T}\n2 O u0 p1 c+1 {1,T}", "[C-]#[O+]", 1),
    "singlet O2 (multiplicity 1 with two unpaired)": ("multiplicity 1\n1 O u1 p2 c0 {2,S}\n2 O u1 p2 c0 {1,S}",
                                                     "[O][O]", 1),
    "benzene, B bonds": ("\n".join([f"{i} C u0 p0 c0 {{{(i - 2) % 6 + 1},B}} {{{i % 6 + 1},B}} {{{i + 6},S}}"
                                    for i in range(1, 7)] + [f"{i} H u0 p0 c0 {{{i - 6},S}}" for i in range(7, 13)]),
                         "c1ccccc1", 1),
    "name line, *labels, p left out": ("ethyl\n1 *1 C u1 {2,S} {3,S} {4,S}\n2 *2 C u0 {1,S} {5,S} {6,S} {7,S}\n"
                                       "3 H u0 {1,S}\n4 H u0 {1,S}\n5 H u0 {2,S}\n6 H u0 {2,S}\n7 H u0 {2,S}",
                                       "[CH2]C", 2),
    "old form: bare radical count": ("1 O 1 {2,S}\n2 H 0 {1,S}", "[OH]", 2),
    "13C isotope": ("1 C u0 p0 c0 i13 {2,S} {3,S} {4,S} {5,S}\n2 H u0 p0 c0 {1,S}\n3 H u0 p0 c0 {1,S}\n"
                    "4 H u0 p0 c0 {1,S}\n5 H u0 p0 c0 {1,S}", "[13CH4]", 1),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_adjacency_lists_become_the_molecule_smiles_names(name):
    text, smiles, multiplicity = GOOD[name]
    mol = mol_from_adjlist(text)
    expected = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == Chem.MolToSmiles(Chem.RemoveHs(expected))
    assert mol.GetNumAtoms() == expected.GetNumAtoms()
    assert parse_adjlist(text).multiplicity == multiplicity
    assert charge_and_multiplicity(mol)[0] == Chem.GetFormalCharge(expected)
    conformer = embed_mol(mol, 1)[0]
    assert conformer["symbols"] == [atom.GetSymbol() for atom in mol.GetAtoms()]  # the list's atom order


BAD = [
    ("1 C u0 p0 c0 {2,S}\n2 H u0 p0 c0 {1,S}", "adjacency list atom 1 (C): bond orders 1 + u0 + p0 do not add up to its "
     "4 valence electron(s) with charge c0 (missing hydrogen atoms or wrong u/p/c fields?)"),
    ("1 C u0 p0 c0 {2,D}\n2 O u0 p2 c0 {1,S}", "adjacency list line 2 '2 O u0 p2 c0 {1,S}': the bond to atom 1 is S "
     "here but D on line 1"),
    ("1 H u0 p0 c0 {3,S}", "adjacency list line 1 '1 H u0 p0 c0 {3,S}': bond to atom 3, which is not in the list"),
    ("1 H u1 p0 c0\n1 H u1 p0 c0", "adjacency list line 2 '1 H u1 p0 c0': atom number 1 is used twice"),
    ("1 Xx u0", "adjacency list line 1 '1 Xx u0': 'Xx' is not an element symbol"),
    ("1 C u0 p0 c0 {2,H}", "adjacency list line 1 '1 C u0 p0 c0 {2,H}': bond order 'H' is not one of S, D, T, Q, B"),
    ("1 C u0 q0", "adjacency list line 1 '1 C u0 q0': 'q0' is not a u<unpaired>, p<lone pairs>, c<charge> or "
     "i<isotope> field (each once), nor a bond"),
    ("multiplicity two\n1 H u1", "adjacency list line 1 'multiplicity two': write 'multiplicity N' with one integer "
     "N >= 1"),
    ("multiplicity 2\n1 O u0 p2 c0 {2,S} {3,S}\n2 H u0 p0 c0 {1,S}\n3 H u0 p0 c0 {1,S}",
     "adjacency list: multiplicity 2 does not fit 0 unpaired electron(s) (it must be at most unpaired + 1, with the "
     "same parity)"),
    ("", "the adjacency list is empty"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m[:40] for _, m in BAD])
def test_malformed_adjacency_lists_name_the_line(text, message):
    with pytest.raises(ValueError) as err:
        parse_adjlist(text)
    assert str(err.value) == message
