"""GFN-xTB through tblite's ASE calculator: single points and BFGS optimisations, and the entry point
of every other tblite family.

tblite reports some failures by exception (SCF not converged, coincident atoms, Z > 86) and some
not at all: an odd electron count with multiplicity 1 runs silently as a doublet, and atoms 0.01 A
apart give an energy instead of an error. Those two checks are therefore ours, made before tblite
runs. An optimiser that runs out of steps returns False rather than raising: an engine error too.

Frequencies, saddle points and IRCs live in `tblite_families`, rotor scans and interpolated TS
guesses in `tblite_paths` (ASE and geomeTRIC driving tblite); both reuse this module's checks.

Threads: tblite parallelises with OpenMP, which reads OMP_NUM_THREADS once, when the library loads.
Rather than change the worker's environment, each run sets the OpenMP thread count of the calling
thread to `cores` through the loaded libgomp (omp_set_num_threads) and restores it afterwards; where
no libgomp is loaded (other builds or platforms) `cores` is not enforced.
"""

from __future__ import annotations

import ctypes
from contextlib import nullcontext
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, InputError
from ase.optimize import BFGS
from ase.units import Hartree
from tblite.ase import TBLite

from ..xyz import atoms_from_xyz_dict, xyz_dict_from_atoms
from .base import EngineFailure, EngineResult, FailureClass, check_request
from .common import (IMAGINARY_THRESHOLD_CM1, check_distances, check_known_options, number_option, parse_system,
                     thread_limit)

ESS = FailureClass.ESS
# fmax in eV/A (BFGS, and each constrained scan point); max_steps also bounds geomeTRIC's iterations
# (ts_opt, irc, per direction); max_iterations is tblite's own SCF default.
OPTIONS = {"fmax": 0.01, "max_steps": 500, "max_iterations": 250,
           "imaginary_threshold_cm1": IMAGINARY_THRESHOLD_CM1}
BASIC_FAMILIES = frozenset({"conf_opt", "conf_sp", "species_sp"})
# run by tblite_families / tblite_paths, imported on first use (single-point workers never load geomeTRIC)
MORE_FAMILIES = frozenset({"species_freq", "ts_opt", "irc", "rotor_scan_1d", "ts_guess_batch_method"})


class TBLiteEngine:
    name = "tblite"
    families = BASIC_FAMILIES | MORE_FAMILIES
    levels = frozenset({"GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"})

    def version(self) -> str:
        return metadata.version("tblite")

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        method = check_request(self, family, level)
        settings = _options(options)
        workdir = Path(workdir)
        if family in MORE_FAMILIES:
            from .tblite_families import run_family
            with _omp_threads(cores):
                return run_family(family, method, payload, settings, workdir)
        atoms, charge, multiplicity = _system(payload)
        atoms.calc = calculator(method, charge, multiplicity, settings)
        try:
            with _omp_threads(cores):
                if family == "conf_opt":
                    return _optimise(atoms, method, settings, workdir)
                energy = _energy(atoms)
        except (CalculationFailed, InputError) as exc:
            raise _classify(exc, settings) from None
        _write_xyz(workdir / "final.xyz", atoms, f"energy={energy!r} Eh {method} tblite single point")
        return EngineResult(energy_hartree=energy, geometry=payload["xyz"], converged=True,
                            native_outputs=["final.xyz"])


def _optimise(atoms: Atoms, method: str, settings: dict, workdir: Path) -> EngineResult:
    initial = _energy(atoms)  # cached by the calculator: BFGS's first step reuses it
    with BFGS(atoms, logfile=str(workdir / "opt.log"), trajectory=str(workdir / "opt.traj")) as optimizer:
        converged = bool(optimizer.run(fmax=settings["fmax"], steps=settings["max_steps"]))
    reached = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    if not converged:
        raise EngineFailure(ESS, "max_opt_cycles",
                            f"BFGS stopped after {optimizer.nsteps} steps with max force {reached:.4g} eV/A, "
                            f"above fmax {settings['fmax']} eV/A; raise options.max_steps "
                            f"(now {settings['max_steps']}) or start from a better geometry")
    energy = _energy(atoms)
    _write_xyz(workdir / "final.xyz", atoms, f"energy={energy!r} Eh {method} tblite BFGS optimised")
    geometry = xyz_dict_from_atoms(atoms.get_chemical_symbols(), atoms.get_positions().tolist())
    data = {"n_steps": int(optimizer.nsteps), "fmax_ev_per_angstrom": reached,
            "fmax_target_ev_per_angstrom": settings["fmax"], "initial_energy_hartree": initial}
    return EngineResult(energy_hartree=energy, geometry=geometry, converged=True, data=data,
                        native_outputs=["opt.log", "opt.traj", "final.xyz"])


def _energy(atoms: Atoms) -> float:
    energy = float(atoms.get_potential_energy()) / Hartree
    if not np.isfinite(energy):
        raise EngineFailure(ESS, "non_finite_energy", f"tblite returned energy {energy}")
    return energy


def calculator(method: str, charge: int, multiplicity: int, settings: dict) -> TBLite:
    return TBLite(method=method, charge=charge, multiplicity=multiplicity,
                  max_iterations=settings["max_iterations"], verbosity=0)


def _options(options: dict) -> dict[str, Any]:
    settings = check_known_options("tblite", options, OPTIONS)
    settings["fmax"] = number_option("tblite", "fmax (eV/A)", settings["fmax"])
    for key in ("max_steps", "max_iterations"):
        settings[key] = number_option("tblite", key, settings[key], integer=True)
    settings["imaginary_threshold_cm1"] = number_option("tblite", "imaginary_threshold_cm1",
                                                        settings["imaginary_threshold_cm1"], inclusive=True)
    return settings


def _system(payload: dict, key: str = "xyz") -> tuple[Atoms, int, int]:
    """Checked Atoms, charge and multiplicity (see common.parse_system for what is checked)."""
    xyz, charge, multiplicity = parse_system("tblite", payload, key)
    return atoms_from_xyz_dict(xyz), charge, multiplicity


def _check_geometry(atoms: Atoms, what: str = "the geometry") -> None:
    check_distances(atoms.get_chemical_symbols(), atoms.get_positions(), what)


def _classify(exc: Exception, settings: dict) -> EngineFailure:
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


def _write_xyz(path: Path, atoms: Atoms, comment: str) -> None:
    rows = (f"{s:<2} {x:16.10f} {y:16.10f} {z:16.10f}" for s, (x, y, z)
            in zip(atoms.get_chemical_symbols(), atoms.get_positions()))
    path.write_text(f"{len(atoms)}\n{comment}\n" + "\n".join(rows) + "\n")


@lru_cache(maxsize=1)
def _libgomp() -> Any:
    """The OpenMP runtime tblite loaded (found in this process's memory map), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:
        return None
    return ctypes.CDLL(sorted(paths)[0]) if paths else None


def _omp_threads(cores: int):
    gomp = _libgomp()
    if gomp is None:
        return nullcontext()
    return thread_limit(gomp.omp_get_max_threads, gomp.omp_set_num_threads, cores)


ENGINE = TBLiteEngine()
