"""What every tblite family shares: the calculator, the checks made before tblite runs, failure
classification and the engine's options.

tblite reports some failures by exception (SCF not converged, coincident atoms, Z > 86) and some
not at all: an odd electron count with multiplicity 1 runs silently as a doublet, and atoms 0.01 A
apart give an energy instead of an error. Those two checks are therefore ours (`system`,
`check_geometry`), made before tblite runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import InputError
from ase.units import Hartree
from tblite.ase import TBLite

from pipe_rules.contracts.xyz import atoms_from_xyz_dict
from pipe_rules.engines.base import EngineFailure, FailureClass
from pipe_rules.engines.common import (
    IMAGINARY_THRESHOLD_CM1,
    check_distances,
    check_known_options,
    number_option,
    parse_system,
)

ESS = FailureClass.ESS
# fmax in eV/A (BFGS, and each constrained scan point); max_steps also bounds geomeTRIC's iterations
# (ts_opt, irc, per direction); max_iterations is tblite's own SCF default.
OPTIONS = {"fmax": 0.01, "max_steps": 500, "max_iterations": 250,
           "imaginary_threshold_cm1": IMAGINARY_THRESHOLD_CM1}


def energy_of(atoms: Atoms) -> float:
    energy = float(atoms.get_potential_energy()) / Hartree
    if not np.isfinite(energy):
        raise EngineFailure(ESS, "non_finite_energy", f"tblite returned energy {energy}")
    return energy


def calculator(method: str, charge: int, multiplicity: int, settings: dict) -> TBLite:
    return TBLite(method=method, charge=charge, multiplicity=multiplicity,
                  max_iterations=settings["max_iterations"], verbosity=0)


def settings_from(options: dict) -> dict[str, Any]:
    settings = check_known_options("tblite", options, OPTIONS)
    settings["fmax"] = number_option("tblite", "fmax (eV/A)", settings["fmax"])
    for key in ("max_steps", "max_iterations"):
        settings[key] = number_option("tblite", key, settings[key], integer=True)
    settings["imaginary_threshold_cm1"] = number_option("tblite", "imaginary_threshold_cm1",
                                                        settings["imaginary_threshold_cm1"], inclusive=True)
    return settings


def system(payload: dict, key: str = "xyz") -> tuple[Atoms, int, int]:
    """Checked Atoms, charge and multiplicity (see common.parse_system for what is checked)."""
    xyz, charge, multiplicity = parse_system("tblite", payload, key)
    return atoms_from_xyz_dict(xyz), charge, multiplicity


def check_geometry(atoms: Atoms, what: str = "the geometry") -> None:
    check_distances(atoms.get_chemical_symbols(), atoms.get_positions(), what)


def classify(exc: Exception, settings: dict) -> EngineFailure:
    text = f"tblite: {exc}"
    if "SCF not converged" in str(exc):
        return EngineFailure(ESS, "scf_not_converged", f"{text}; raise options.max_iterations (now "
                             f"{settings['max_iterations']}) or check the charge and multiplicity")
    if "unpaired electrons" in str(exc):
        return EngineFailure(ESS, "multiplicity_inconsistent", f"{text}; fix the species' multiplicity")
    if isinstance(exc, InputError):  # coincident atoms, elements beyond Rn
        return EngineFailure(ESS, "bad_geometry", f"{text}; GFN-xTB covers elements H to Rn, "
                             "and no two atoms may share a position")
    return EngineFailure(ESS, "tblite_error", text)  # tblite is deterministic: a retry fails the same way


def write_xyz(path: Path, atoms: Atoms, comment: str) -> None:
    rows = (f"{s:<2} {x:16.10f} {y:16.10f} {z:16.10f}" for s, (x, y, z)
            in zip(atoms.get_chemical_symbols(), atoms.get_positions()))
    path.write_text(f"{len(atoms)}\n{comment}\n" + "\n".join(rows) + "\n")
