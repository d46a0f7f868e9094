"""RMG adjacency lists (what ARC writes under `adjlist:` and as a species' `mol`), read without RMG.

    multiplicity 2                      optional; default: unpaired electrons + 1
    1 C u1 p0 c0 {2,S} {3,S} {4,S}      number, [*label], element, u/p/c fields, then {neighbour,order}
    2 H u0 p0 c0 {1,S}

Orders S, D, T, Q (1-4) and B (aromatic, 1.5); `c` is the formal charge (c0, c+1, c-1); `p` may be
left out and is then inferred; the old form with a bare radical count (`1 C 0 {2,D}`) is read too.
Every line is checked, and so is each main-group atom's electron count (bond orders + u + 2p =
valence electrons - charge), which catches missing hydrogen atoms and wrong fields; the problem is
named by line. `mol_dict_to_adjlist` turns ARC's dict form (RMG's Molecule.as_dict) into this text.
No RDKit here: chem.mol_from_adjlist builds the molecule, in this atom order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ORDERS = {"S": 1.0, "D": 2.0, "T": 3.0, "Q": 4.0, "B": 1.5}
# valence electrons of the main-group elements the check applies to (others: not checked)
VALENCE = {"H": 1, "He": 2, "Li": 1, "Be": 2, "B": 3, "C": 4, "N": 5, "O": 6, "F": 7, "Ne": 8, "Na": 1, "Mg": 2,
           "Al": 3, "Si": 4, "P": 5, "S": 6, "Cl": 7, "Ar": 8, "K": 1, "Ca": 2, "Ga": 3, "Ge": 4, "As": 5,
           "Se": 6, "Br": 7, "Kr": 8, "In": 3, "Sn": 4, "Sb": 5, "Te": 6, "I": 7, "Xe": 8}
_BOND = re.compile(r"\{(\d+),([^{}]+)\}")
_FIELD = re.compile(r"([upci])([+-]?\d+)")


@dataclass(frozen=True)
class AdjAtom:
    element: str
    unpaired: int
    lone_pairs: int
    charge: int
    isotope: int = 0  # 0: the element's natural mixture


@dataclass(frozen=True)
class AdjList:
    atoms: tuple[AdjAtom, ...]
    bonds: tuple[tuple[int, int, str], ...]  # (i, j, order letter), 0-based, i < j
    multiplicity: int

    @property
    def charge(self) -> int:
        return sum(a.charge for a in self.atoms)


def _symbol(token: str) -> str | None:
    from pipe_rules.contracts.xyz import element_symbol  # the same element spelling rules as xyz text

    return element_symbol(token) if token.isalpha() else None


def parse_adjlist(text: str) -> AdjList:
    """Parse and check an adjacency list; ValueError names the line and what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the adjacency list is empty")
    multiplicity: int | None = None
    numbers: dict[int, int] = {}
    atoms: list[AdjAtom] = []
    listed: list[tuple[int, int, str, int]] = []  # (atom position, neighbour number, order, line)
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        tokens = line.split()
        if tokens[0] == "multiplicity":
            if len(tokens) != 2 or not tokens[1].isdigit() or int(tokens[1]) < 1:
                raise ValueError(f"adjacency list line {line_no} {line!r}: write 'multiplicity N' with one integer N >= 1")
            multiplicity = int(tokens[1])
            continue
        if not tokens[0].isdigit():
            if atoms or multiplicity is not None or len(tokens) != 1:
                raise ValueError(f"adjacency list line {line_no} {line!r} is not an atom line "
                                 "('1 C u0 p0 c0 {2,S}') nor 'multiplicity N'")
            continue  # a name line before the atoms
        atom, bonds = _atom_line(line, tokens, line_no)
        number = int(tokens[0])
        if number in numbers:
            raise ValueError(f"adjacency list line {line_no} {line!r}: atom number {number} is used twice")
        numbers[number] = len(atoms)
        listed += [(len(atoms), other, order, line_no) for other, order in bonds]
        atoms.append(atom)
    if not atoms:
        raise ValueError("the adjacency list has no atom lines ('1 C u0 p0 c0 {2,S}')")
    bonds = _pair_bonds(listed, numbers, text)
    atoms = _check_electrons(atoms, bonds, text)
    unpaired = sum(a.unpaired for a in atoms)
    if multiplicity is None:
        multiplicity = unpaired + 1
    elif multiplicity - 1 > unpaired or (unpaired - multiplicity + 1) % 2:
        raise ValueError(f"adjacency list: multiplicity {multiplicity} does not fit {unpaired} unpaired electron(s) "
                         "(it must be at most unpaired + 1, with the same parity)")
    return AdjList(tuple(atoms), tuple(sorted(bonds)), multiplicity)


def _atom_line(line: str, tokens: list[str], line_no: int) -> tuple[AdjAtom, list[tuple[int, str]]]:
    where = f"adjacency list line {line_no} {line!r}"
    rest = tokens[1:]
    if rest and rest[0].startswith("*"):
        rest = rest[1:]  # an atom label such as *1
    if not rest or _symbol(rest[0]) is None:
        raise ValueError(f"{where}: {rest[0] if rest else '(nothing)'!r} is not an element symbol")
    element = _symbol(rest[0])
    fields: dict[str, int] = {}
    bonds: list[tuple[int, str]] = []
    for token in rest[1:]:
        if token.startswith("{"):
            found = _BOND.fullmatch(token)
            if not found:
                raise ValueError(f"{where}: bond {token!r} is not '{{neighbour,order}}' such as {{2,S}}")
            order = found.group(2)
            if order not in ORDERS:
                raise ValueError(f"{where}: bond order {order!r} is not one of S, D, T, Q, B")
            bonds.append((int(found.group(1)), order))
            continue
        if bonds:
            raise ValueError(f"{where}: {token!r} after the bonds; the u/p/c fields come before them")
        found = _FIELD.fullmatch(token)
        if token.isdigit() and "u" not in fields:
            fields["u"] = int(token)  # the old form: a bare radical count
        elif found and found.group(1) not in fields:
            fields[found.group(1)] = int(found.group(2))
        else:
            raise ValueError(f"{where}: {token!r} is not a u<unpaired>, p<lone pairs>, c<charge> or i<isotope> "
                             "field (each once), nor a bond")
    if fields.get("u", 0) < 0 or fields.get("p", 0) < 0:
        raise ValueError(f"{where}: unpaired electrons and lone pairs cannot be negative")
    return AdjAtom(element, fields.get("u", 0), fields.get("p", -1), fields.get("c", 0), fields.get("i", 0)), bonds


def _pair_bonds(listed, numbers: dict[int, int], text: str) -> list[tuple[int, int, str]]:
    """Each bond must be listed on both atoms' lines with the same order."""
    seen: dict[tuple[int, int], tuple[str, int]] = {}
    lines = text.splitlines()
    for atom, other_number, order, line_no in listed:
        where = f"adjacency list line {line_no} {lines[line_no - 1].strip()!r}"
        other = numbers.get(other_number)
        if other is None:
            raise ValueError(f"{where}: bond to atom {other_number}, which is not in the list")
        if other == atom:
            raise ValueError(f"{where}: an atom cannot bond to itself")
        key = (min(atom, other), max(atom, other))
        if key in seen and seen[key][1] != line_no:
            if seen[key][0] != order:
                raise ValueError(f"{where}: the bond to atom {other_number} is {order} here but {seen[key][0]} "
                                 f"on line {seen[key][1]}")
            seen[key] = (order, 0)  # 0: listed on both lines
        elif key in seen:
            raise ValueError(f"{where}: the bond to atom {other_number} is listed twice")
        else:
            seen[key] = (order, line_no)
    one_sided = [(key, line_no) for key, (_, line_no) in seen.items() if line_no]
    if one_sided:
        (i, j), line_no = one_sided[0]
        number = {v: k for k, v in numbers.items()}
        raise ValueError(f"adjacency list line {line_no} {lines[line_no - 1].strip()!r}: the bond between atoms "
                         f"{number[i]} and {number[j]} must also be listed on the other atom's line")
    return [(i, j, order) for (i, j), (order, _) in seen.items()]


def _check_electrons(atoms: list[AdjAtom], bonds, text: str) -> list[AdjAtom]:
    order_sum = [0.0] * len(atoms)
    for i, j, order in bonds:
        order_sum[i] += ORDERS[order]
        order_sum[j] += ORDERS[order]
    checked = []
    for index, atom in enumerate(atoms):
        valence = VALENCE.get(atom.element)
        pairs = atom.lone_pairs
        if valence is not None:
            free = valence - atom.charge - order_sum[index] - atom.unpaired  # electrons left for lone pairs
            if pairs < 0:
                pairs = int(round(free / 2)) if free >= 0 and abs(free / 2 - round(free / 2)) < 1e-6 else -1
            if pairs < 0 or abs(free - 2 * pairs) > 1e-6:
                shown = f"p{atom.lone_pairs}" if atom.lone_pairs >= 0 else "no p field"
                raise ValueError(f"adjacency list atom {index + 1} ({atom.element}): bond orders {order_sum[index]:g} + "
                                 f"u{atom.unpaired} + {shown} do not add up to its {valence} valence electron(s) "
                                 f"with charge c{atom.charge:+d}".replace("c+0", "c0") + " (missing hydrogen atoms or wrong u/p/c fields?)")
        checked.append(AdjAtom(atom.element, atom.unpaired, max(pairs, 0), atom.charge, atom.isotope))
    return checked


def mol_dict_to_adjlist(mol: Any) -> str:
    """ARC's dict form of a molecule (RMG Molecule.as_dict: atoms with element number, charge,
    radical_electrons, lone_pairs and edges {neighbour id: order}) as adjacency-list text."""
    from pipe_rules.contracts.xyz import _SYMBOLS

    if not isinstance(mol, dict) or not isinstance(mol.get("atoms"), list) or not mol["atoms"]:
        raise ValueError("a molecule dict needs a non-empty 'atoms' list (RMG Molecule.as_dict)")
    ids: dict[Any, int] = {}
    for index, atom in enumerate(mol["atoms"]):
        if not isinstance(atom, dict) or "id" not in atom:
            raise ValueError(f"atom {index} of the molecule dict has no 'id'")
        ids[atom["id"]] = index + 1
    letters = {v: k for k, v in ORDERS.items()}
    lines = [f"multiplicity {mol['multiplicity']}"] if isinstance(mol.get("multiplicity"), int) else []
    for index, atom in enumerate(mol["atoms"]):
        element = atom.get("element")
        number = element.get("number") if isinstance(element, dict) else None
        if not isinstance(number, int) or not 1 <= number <= len(_SYMBOLS):
            raise ValueError(f"atom {index} of the molecule dict has no element number")
        fields = [str(index + 1), _SYMBOLS[number - 1]]
        for key, letter in (("radical_electrons", "u"), ("lone_pairs", "p"), ("charge", "c")):
            value = atom.get(key, 0)
            if not isinstance(value, int):
                raise ValueError(f"atom {index} of the molecule dict: {key} {value!r} is not an integer")
            fields.append(f"{letter}{value:+d}" if letter == "c" and value else f"{letter}{value}")
        for neighbour, order in sorted((atom.get("edges") or {}).items(), key=lambda e: ids.get(e[0], 0)):
            if neighbour not in ids or not isinstance(order, (int, float)) or float(order) not in letters:
                raise ValueError(f"atom {index} of the molecule dict: bond {neighbour!r}: {order!r} is not a bond "
                                 "to a listed atom of order 1, 1.5, 2, 3 or 4")
            fields.append(f"{{{ids[neighbour]},{letters[float(order)]}}}")
        lines.append(" ".join(fields))
    return "\n".join(lines) + "\n"
