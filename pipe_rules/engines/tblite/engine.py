"""GFN-xTB through tblite's ASE calculator: single points and BFGS optimisations, and the entry point
of every other tblite family.

An optimiser that runs out of steps returns False rather than raising: an engine error too.
Frequencies, saddle points and IRCs live in `families`, rotor scans and interpolated TS guesses in
`paths` (ASE and geomeTRIC driving tblite); they are imported on first use, so single-point workers
never load geomeTRIC. What all of them share (checks, calculator) is in `core`;
`cores` limits tblite's OpenMP and numpy's BLAS threads for the run (`engines.threads`).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, InputError
from ase.optimize import BFGS

from pipe_rules.contracts.xyz import xyz_dict_from_atoms
from pipe_rules.engines.base import EngineFailure, EngineResult, FailureClass, check_request
from pipe_rules.engines.tblite.core import (
    calculator,
    classify,
    energy_of,
    settings_from,
    system,
    write_xyz,
)
from pipe_rules.engines.threads import limited_threads

ESS = FailureClass.ESS
BASIC_FAMILIES = frozenset({"conf_opt", "conf_sp", "species_sp"})
# run by `families` and `paths`, imported on first use
MORE_FAMILIES = frozenset({"species_freq", "ts_opt", "irc", "rotor_scan_1d", "ts_guess_batch_method"})


class TBLiteEngine:
    name = "tblite"
    families = BASIC_FAMILIES | MORE_FAMILIES
    levels = frozenset({"GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"})

    def version(self) -> str:
        return metadata.version("tblite")

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        method = check_request(self, family, level)
        settings = settings_from(options)
        workdir = Path(workdir)
        if family in MORE_FAMILIES:
            from pipe_rules.engines.tblite.families import run_family
            with limited_threads(cores):
                return run_family(family, method, payload, settings, workdir)
        atoms, charge, multiplicity = system(payload)
        atoms.calc = calculator(method, charge, multiplicity, settings)
        try:
            with limited_threads(cores):
                if family == "conf_opt":
                    return _optimise(atoms, method, settings, workdir)
                energy = energy_of(atoms)
        except (CalculationFailed, InputError) as exc:
            raise classify(exc, settings) from None
        write_xyz(workdir / "final.xyz", atoms, f"energy={energy!r} Eh {method} tblite single point")
        return EngineResult(energy_hartree=energy, geometry=payload["xyz"], converged=True,
                            native_outputs=["final.xyz"])


def _optimise(atoms: Atoms, method: str, settings: dict, workdir: Path) -> EngineResult:
    initial = energy_of(atoms)  # cached by the calculator: BFGS's first step reuses it
    with BFGS(atoms, logfile=str(workdir / "opt.log"), trajectory=str(workdir / "opt.traj")) as optimizer:
        converged = bool(optimizer.run(fmax=settings["fmax"], steps=settings["max_steps"]))
    reached = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    energy = energy_of(atoms)
    geometry = xyz_dict_from_atoms(atoms.get_chemical_symbols(), atoms.get_positions().tolist())
    if not converged:
        raise EngineFailure(ESS, "max_opt_cycles",
                            f"BFGS stopped after {optimizer.nsteps} steps with max force {reached:.4g} eV/A, "
                            f"above fmax {settings['fmax']} eV/A; raise options.max_steps "
                            f"(now {settings['max_steps']}) or start from a better geometry",
                            last_geometry=geometry, last_energy_hartree=energy)
    write_xyz(workdir / "final.xyz", atoms, f"energy={energy!r} Eh {method} tblite BFGS optimised")
    data = {"n_steps": int(optimizer.nsteps), "fmax_ev_per_angstrom": reached,
            "fmax_target_ev_per_angstrom": settings["fmax"], "initial_energy_hartree": initial}
    return EngineResult(energy_hartree=energy, geometry=geometry, converged=True, data=data,
                        native_outputs=["opt.log", "opt.traj", "final.xyz"])


ENGINE = TBLiteEngine()
