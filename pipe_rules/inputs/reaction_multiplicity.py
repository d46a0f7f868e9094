"""The spin multiplicity of a reaction's TS when the ARC input does not give it, from its
reactants' and products' multiplicities, following ARC's rules for the usual cases
(ARCReaction.get_rxn_multiplicity): one species on a side gives its multiplicity; singlets only
give a singlet; one open-shell species among singlets gives its own; two doublets a singlet.
Anything else (e.g. doublet + triplet) must be given in the input.
"""

from __future__ import annotations

from typing import Any


def reaction_sides(label: str) -> tuple[list[str], list[str]]:
    """'A + B <=> C + D' -> (['A', 'B'], ['C', 'D'])."""
    for arrow in ("<=>", "=>", "<="):
        if arrow in label:
            left, right = label.split(arrow, 1)
            return [s.strip() for s in left.split(" + ")], [s.strip() for s in right.split(" + ")]
    raise ValueError("its label has no '<=>' between reactants and products")


def _multiplicity(label: str, species: dict[str, Any]) -> int:
    from pipe_rules.inputs.adjlist import parse_adjlist

    item = species.get(label)
    if item is None:
        raise ValueError(f"{label!r} is not a species of the input")
    if item.multiplicity is not None:
        return item.multiplicity
    if item.adjlist:
        return parse_adjlist(item.adjlist).multiplicity
    if item.smiles or item.inchi:
        from pipe_rules.inputs import chem

        mol = chem.mol_from_smiles(item.smiles) if item.smiles else chem.mol_from_inchi(item.inchi)
        return chem.charge_and_multiplicity(mol)[1]
    return 1


def reaction_multiplicity(reactants: list[str], products: list[str], species: dict[str, Any]) -> int:
    sides = [sorted(_multiplicity(s, species) for s in side) for side in (reactants, products)]
    for side in sides:
        if len(side) == 1:
            return side[0]
    for side in sides:
        open_shell = [m for m in side if m > 1]
        if not open_shell:
            return 1
        if len(open_shell) == 1:
            return open_shell[0]
    if sides[0] == [2, 2] and sides[1] == [2, 2]:
        return 1
    raise ValueError(f"multiplicities {sides[0]} <=> {sides[1]} do not fix the TS multiplicity")
