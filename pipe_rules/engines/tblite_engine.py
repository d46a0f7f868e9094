"""GFN-xTB through tblite's ASE calculator: single points and BFGS geometry optimisations.

tblite reports some failures by exception (SCF not converged, coincident atoms, Z > 86) and some
not at all: an odd electron count with multiplicity 1 runs silently as a doublet, and atoms 0.01 A
apart give an energy instead of an error. Those two checks are therefore ours, made before tblite
runs. An optimiser that runs out of steps returns False rather than raising: an engine error too.

Threads: tblite parallelises with OpenMP, which reads OMP_NUM_THREADS once, when the library loads.
Rather than change the worker's environment, each run sets the OpenMP thread count of the calling
thread to `cores` through the loaded libgomp (omp_set_num_threads) and restores it afterwards; where
no libgomp is loaded (other builds or platforms) `cores` is not enforced.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, InputError
from ase.optimize import BFGS
from ase.units import Hartree
from tblite.ase import TBLite

from ..xyz import atoms_from_xyz_dict, xyz_dict_from_atoms
from .base import EngineFailure, EngineResult, FailureClass, check_request

ESS = FailureClass.ESS
MIN_DISTANCE_A = 0.5  # no bond is shorter (H2: 0.74 A); closer atoms mean a broken geometry
OPTIONS = {"fmax": 0.01, "max_steps": 500, "max_iterations": 250}  # fmax in eV/A; tblite's own SCF default


class TBLiteEngine:
    name = "tblite"
    families = frozenset({"conf_opt", "conf_sp", "species_sp"})
    levels = frozenset({"GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"})

    def version(self) -> str:
        return metadata.version("tblite")

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        method = check_request(self, family, level)
        settings = _options(options)
        atoms, charge, multiplicity = _system(payload)
        _check_geometry(atoms)
        atoms.calc = TBLite(method=method, charge=charge, multiplicity=multiplicity,
                            max_iterations=settings["max_iterations"], verbosity=0)
        workdir = Path(workdir)
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


def _options(options: dict) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"tblite engine: unknown option(s) {', '.join(map(repr, unknown))}; "
                         f"it understands {', '.join(OPTIONS)}")
    settings = {**OPTIONS, **options}
    fmax = settings["fmax"]
    if isinstance(fmax, bool) or not isinstance(fmax, (int, float)) or not 0 < fmax < float("inf"):
        raise ValueError(f"tblite engine: option fmax must be a positive number (eV/A), got {fmax!r}")
    for key in ("max_steps", "max_iterations"):
        if isinstance(settings[key], bool) or not isinstance(settings[key], int) or settings[key] < 1:
            raise ValueError(f"tblite engine: option {key} must be a positive integer, got {settings[key]!r}")
    settings["fmax"] = float(fmax)
    return settings


def _system(payload: dict) -> tuple[Atoms, int, int]:
    if "xyz" not in payload:
        raise ValueError("tblite engine: the task payload has no 'xyz' geometry")
    try:
        atoms = atoms_from_xyz_dict(payload["xyz"])
    except ValueError as exc:
        raise ValueError(f"tblite engine: payload 'xyz' is invalid: {exc}") from None
    charge, multiplicity = payload.get("charge", 0), payload.get("multiplicity", 1)
    for key, value, low in (("charge", charge, None), ("multiplicity", multiplicity, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            raise ValueError(f"tblite engine: payload {key!r} must be an integer"
                             f"{f' >= {low}' if low else ''}, got {value!r}")
    electrons = int(atoms.get_atomic_numbers().sum()) - charge
    problem = _spin_problem(electrons, multiplicity)
    if problem:
        raise EngineFailure(ESS, "multiplicity_inconsistent",
                            f"{atoms.get_chemical_formula()} with charge {charge} has {electrons} electrons: "
                            f"{problem}; fix the species' charge or multiplicity")
    return atoms, charge, multiplicity


def _spin_problem(electrons: int, multiplicity: int) -> str | None:
    unpaired = multiplicity - 1
    if electrons < 0:
        return "a charge cannot remove more electrons than the atoms have"
    if unpaired > electrons:
        return f"multiplicity {multiplicity} needs {unpaired} unpaired electrons"
    if (electrons - unpaired) % 2:
        parity, needed = ("odd", "even (2, 4, ...)") if electrons % 2 else ("even", "odd (1, 3, ...)")
        return f"an {parity} electron count needs an {needed} multiplicity, not {multiplicity}"
    return None


def _check_geometry(atoms: Atoms) -> None:
    positions = atoms.get_positions()
    if len(positions) < 2:
        return
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    distances[np.diag_indices(len(positions))] = np.inf
    i, j = np.unravel_index(np.argmin(distances), distances.shape)
    if distances[i, j] < MIN_DISTANCE_A:
        symbols = atoms.get_chemical_symbols()
        raise EngineFailure(ESS, "too_close_atoms",
                            f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {distances[i, j]:.3f} A apart, "
                            f"closer than {MIN_DISTANCE_A} A; check the geometry's units (Angstrom) and atom order")


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


@contextmanager
def _omp_threads(cores: int) -> Iterator[None]:
    gomp = _libgomp()
    if gomp is None or not cores or cores < 1:
        yield
        return
    before = gomp.omp_get_max_threads()
    gomp.omp_set_num_threads(int(cores))
    try:
        yield
    finally:
        gomp.omp_set_num_threads(before)


ENGINE = TBLiteEngine()
