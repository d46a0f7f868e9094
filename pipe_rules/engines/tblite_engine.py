"""GFN-xTB through tblite's ASE calculator: single points and BFGS geometry optimisations.

tblite reports some failures by exception (SCF not converged, atoms too close) and some not at
all (a multiplicity that does not fit the electron count is silently accepted), so the parity
check is ours. An optimiser that runs out of steps returns False: that is an engine error.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, InputError
from ase.io import write
from ase.optimize import BFGS
from ase.units import Hartree
from tblite.ase import TBLite

from .base import EngineFailure, EngineResult, FailureClass

ESS = FailureClass.ESS


def atoms_from_xyz(xyz: dict) -> Atoms:
    return Atoms(symbols=xyz["symbols"], positions=np.asarray(xyz["coords"], dtype=float))


def xyz_from_atoms(atoms: Atoms, template: dict) -> dict:
    return {"symbols": list(template["symbols"]), "isotopes": list(template.get("isotopes", [])),
            "coords": [[round(float(c), 8) for c in row] for row in atoms.get_positions()]}


def check_multiplicity(atoms: Atoms, charge: int, multiplicity: int) -> None:
    electrons = int(atoms.get_atomic_numbers().sum()) - charge
    unpaired = multiplicity - 1
    if electrons < 0 or unpaired > electrons or (electrons - unpaired) % 2:
        raise EngineFailure(ESS, "multiplicity_inconsistent",
                            f"{electrons} electrons cannot have multiplicity {multiplicity} (charge {charge})")


class TBLiteEngine:
    name = "tblite"
    families = frozenset({"conf_opt", "conf_sp", "species_sp"})
    levels = frozenset({"GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"})

    def version(self) -> str:
        return metadata.version("tblite")

    def _calculator(self, level: str, payload: dict, options: dict) -> TBLite:
        return TBLite(method=level, charge=payload.get("charge", 0), multiplicity=payload.get("multiplicity", 1),
                      max_iterations=int(options.get("max_iterations", 250)), verbosity=0)

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        atoms = atoms_from_xyz(payload["xyz"])
        check_multiplicity(atoms, payload.get("charge", 0), payload.get("multiplicity", 1))
        atoms.calc = self._calculator(level, payload, options)
        try:
            if family == "conf_opt":
                return self._optimise(atoms, payload, options, workdir)
            energy = atoms.get_potential_energy() / Hartree
        except (CalculationFailed, InputError, RuntimeError) as exc:
            raise _classify(exc) from None
        write(workdir / "input.xyz", atoms)
        return EngineResult(energy_hartree=float(energy), geometry=payload["xyz"], converged=True,
                            native_outputs=["input.xyz"])

    def _optimise(self, atoms: Atoms, payload: dict, options: dict, workdir: Path) -> EngineResult:
        fmax = float(options.get("fmax", 0.01))
        max_steps = int(options.get("max_steps", 500))
        optimizer = BFGS(atoms, logfile=str(workdir / "opt.log"), trajectory=str(workdir / "opt.traj"))
        converged = bool(optimizer.run(fmax=fmax, steps=max_steps))
        if not converged:
            raise EngineFailure(ESS, "max_opt_cycles",
                                f"BFGS did not reach fmax {fmax} eV/A in {max_steps} steps")
        energy = atoms.get_potential_energy() / Hartree
        write(workdir / "final.xyz", atoms)
        reached = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        return EngineResult(energy_hartree=float(energy), geometry=xyz_from_atoms(atoms, payload["xyz"]),
                            converged=True, data={"n_steps": optimizer.nsteps, "fmax_ev_per_a": reached},
                            native_outputs=["opt.log", "opt.traj", "final.xyz"])


def _classify(exc: Exception) -> EngineFailure:
    text = str(exc)
    if "SCF not converged" in text or "scf" in text.lower() and "converge" in text.lower():
        return EngineFailure(ESS, "scf_not_converged", text)
    if "interatomic distances" in text or isinstance(exc, InputError):
        return EngineFailure(ESS, "bad_geometry", text)
    return EngineFailure(FailureClass.TRANSIENT, "engine_runtime_error", text)


ENGINE = TBLiteEngine()
