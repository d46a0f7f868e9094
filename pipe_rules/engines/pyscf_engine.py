"""PySCF: Hartree-Fock and DFT single points, geomeTRIC optimisations and analytic frequencies.

Levels are "method/basis", case-insensitive: "hf/sto-3g", "b3lyp/def2-svp". "hf" gives RHF, or UHF
for an open shell (multiplicity > 1); any other method is taken as a libxc functional name and
gives RKS/UKS the same way.

PySCF reports a failed SCF by flag, not exception: `mf.kernel()` returns an energy and sets
`mf.converged = False`. Every SCF here is checked, so a task never completes on an unconverged
energy (ESS "scf_not_converged"; options.max_cycle provokes it on purpose). Inside an optimisation
`geometric_solver.kernel` raises RuntimeError for an unconverged gradient SCF and returns
(False, mol) when geomeTRIC runs out of steps: both are checked too.

Threads: PySCF uses every core it sees (OpenMP, and BLAS through numpy); `cores` limits both for the
run through threadpoolctl (`engines.threads`), entered once PySCF's libraries are loaded.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pipe_rules.contracts.xyz import xyz_dict_from_atoms
from pipe_rules.engines import geometric_support
from pipe_rules.engines.base import EngineFailure, EngineResult, FailureClass, InvalidRequest, check_request
from pipe_rules.engines.common import (
    IMAGINARY_THRESHOLD_CM1,
    check_known_options,
    frequency_data,
    number_option,
    parse_system,
)
from pipe_rules.engines.threads import limited_threads

ESS = FailureClass.ESS
OPTIONS = {"max_cycle": 100, "conv_tol": 1e-9, "max_steps": 100, "imaginary_threshold_cm1": IMAGINARY_THRESHOLD_CM1}
HF_NAMES = frozenset({"hf", "scf"})


class PySCFEngine:
    name = "pyscf"
    families = frozenset({"conf_sp", "species_sp", "conf_opt", "species_freq"})
    levels = None  # any "method/basis"; checked in run() where the message can say what is wrong

    def version(self) -> str:
        return metadata.version("pyscf")

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        check_request(self, family, level)
        method, basis = parse_level(level)
        settings = _options(options)
        xyz, charge, multiplicity = parse_system("pyscf", payload)
        workdir = Path(workdir)
        with _threads(cores):
            mol = _molecule(xyz, charge, multiplicity, basis, workdir)
            try:
                if family == "conf_opt":
                    return _optimise(mol, method, settings, workdir)
                mf = _scf(mol, method, settings)
                energy = _converged_energy(mf, settings)
                data: dict[str, Any] = {"scf_cycles": int(getattr(mf, "cycles", 0) or 0)}
                if family == "species_freq":
                    data.update(_frequencies(mf, settings))
            except (RuntimeError, np.linalg.LinAlgError) as exc:
                raise _classify(exc, settings) from None
            finally:
                _close_output(mol)
        return EngineResult(energy_hartree=energy, geometry=payload["xyz"], converged=True, data=data,
                            native_outputs=["pyscf.out"])


def parse_level(level: str) -> tuple[str, str]:
    """('hf', 'sto-3g') from 'HF/STO-3G'; InvalidRequest naming the problem otherwise."""
    parts = [part.strip() for part in level.split("/")]
    if len(parts) != 2 or not all(parts):
        raise InvalidRequest(f"pyscf engine: level {level!r} is not 'method/basis' (e.g. 'hf/sto-3g', 'b3lyp/def2-svp')")
    method, basis = parts[0].lower(), parts[1].lower()
    if method not in HF_NAMES:
        from pyscf.dft import libxc
        try:
            libxc.parse_xc(method)
        except (KeyError, ValueError):
            raise InvalidRequest(f"pyscf engine: level {level!r}: {parts[0]!r} is neither 'hf' nor a functional "
                             "libxc knows (e.g. b3lyp, pbe0, wb97x-d3bj)") from None
    return method, basis


def _options(options: dict) -> dict[str, Any]:
    settings = check_known_options("pyscf", options, OPTIONS)
    for key in ("max_cycle", "max_steps"):
        settings[key] = number_option("pyscf", key, settings[key], integer=True)
    settings["conv_tol"] = number_option("pyscf", "conv_tol (Eh)", settings["conv_tol"])
    settings["imaginary_threshold_cm1"] = number_option("pyscf", "imaginary_threshold_cm1",
                                                        settings["imaginary_threshold_cm1"], inclusive=True)
    return settings


def _molecule(xyz: dict, charge: int, multiplicity: int, basis: str, workdir: Path):
    from pyscf import gto
    from pyscf.gto.basis import BasisNotFoundError

    atoms = [(symbol, tuple(map(float, row))) for symbol, row in zip(xyz["symbols"], xyz["coords"])]
    try:
        mol = gto.M(atom=atoms, basis=basis, charge=charge, spin=multiplicity - 1, unit="Angstrom", verbose=0)
    except BasisNotFoundError as exc:
        raise InvalidRequest(f"pyscf engine: basis {basis!r} is not available for this species: "
                         f"{' '.join(str(exc).split())}; pick a basis PySCF ships (e.g. sto-3g, 6-31g*, "
                         "def2-svp, cc-pvdz)") from None
    # the log goes to the task folder; gto.M(output=...) would also print its path on stdout.
    # PySCF echoes its warnings to stderr as well.
    mol.stdout = open(workdir / "pyscf.out", "w")  # closed by _close_output
    mol.verbose = 3
    return mol


def _scf(mol, method: str, settings: dict):
    from pyscf import dft, scf

    open_shell = mol.spin > 0
    if method in HF_NAMES:
        mf = scf.UHF(mol) if open_shell else scf.RHF(mol)
    else:
        mf = dft.UKS(mol) if open_shell else dft.RKS(mol)
        mf.xc = method
    mf.max_cycle = settings["max_cycle"]
    mf.conv_tol = settings["conv_tol"]
    mf.kernel()
    return mf


def _converged_energy(mf, settings: dict) -> float:
    energy = float(mf.e_tot)
    if not mf.converged:
        raise EngineFailure(ESS, "scf_not_converged",
                            f"PySCF {type(mf).__name__} did not converge in max_cycle={settings['max_cycle']} "
                            f"cycles (last energy {energy:.10f} Eh); raise options.max_cycle or check the "
                            "charge, multiplicity and geometry")
    if not np.isfinite(energy):
        raise EngineFailure(ESS, "non_finite_energy", f"PySCF returned energy {energy}")
    return energy


def _optimise(mol, method: str, settings: dict, workdir: Path) -> EngineResult:
    from pyscf.geomopt import geometric_solver

    mf = _scf(mol, method, settings)
    initial = _converged_energy(mf, settings)
    steps: list[float] = []
    with geometric_support.quiet_logging(workdir) as log_ini:
        try:
            converged, final = geometric_solver.kernel(
                mf, maxsteps=settings["max_steps"], logIni=log_ini, prefix=str(workdir / "opt"),
                callback=lambda env: steps.append(float(env["energy"])))
        except RuntimeError as exc:  # an unconverged SCF inside a step (assert_convergence)
            raise _classify(exc, settings) from None
        except Exception as exc:  # noqa: BLE001 - geomeTRIC's own errors are classified, others propagate
            failure = geometric_support.classify(exc, "optimisation", settings["max_steps"])
            if failure is None:
                raise
            raise failure from None
    # geomeTRIC evaluates the final geometry last: the final mol's coordinates are those of steps[-1]
    coords = final.atom_coords(unit="Angstrom")
    geometry = xyz_dict_from_atoms([final.atom_pure_symbol(i) for i in range(final.natm)], coords)
    if not converged:
        raise EngineFailure(ESS, "max_opt_cycles",
                            f"geomeTRIC did not converge within max_steps={settings['max_steps']} steps; raise "
                            "options.max_steps or start from a better geometry",
                            last_geometry=geometry, last_energy_hartree=steps[-1] if steps else None)
    data = {"n_steps": len(steps), "initial_energy_hartree": initial}
    return EngineResult(energy_hartree=steps[-1], geometry=geometry, converged=True, data=data,
                        native_outputs=[name for name in ("pyscf.out", "opt.log") if (workdir / name).exists()])


def _frequencies(mf, settings: dict) -> dict[str, Any]:
    """Analytic Hessian; PySCF's harmonic analysis projects out translations and rotations itself."""
    from pyscf.hessian import thermo

    hessian = mf.Hessian().kernel()
    analysis = thermo.harmonic_analysis(mf.mol, hessian, imaginary_freq=False)
    return frequency_data(np.real(analysis["freq_wavenumber"]), settings["imaginary_threshold_cm1"])


def _classify(exc: Exception, settings: dict) -> EngineFailure:
    text = f"PySCF: {type(exc).__name__}: {exc}"
    if "not converged" in str(exc):
        return EngineFailure(ESS, "scf_not_converged", f"{text}; raise options.max_cycle (now "
                             f"{settings['max_cycle']}) or check the charge and multiplicity")
    if "spin" in str(exc) and "not consistent" in str(exc):
        return EngineFailure(ESS, "multiplicity_inconsistent", f"{text}; fix the species' multiplicity")
    return EngineFailure(ESS, "pyscf_error", text)  # deterministic: the same input fails the same way


def _close_output(mol) -> None:
    stdout = getattr(mol, "stdout", None)
    if stdout is not None and getattr(stdout, "name", "") not in ("<stdout>", "<stderr>"):
        stdout.close()


def _threads(cores: int):
    from pyscf import lib  # noqa: F401 - loads PySCF's OpenMP runtime, so the limit covers it

    return limited_threads(cores)


ENGINE = PySCFEngine()
