"""tblite families beyond single points: species_freq, ts_opt and irc (this module), rotor_scan_1d
and ts_guess_batch_method (`paths`).

Frequencies come from ASE's finite-difference Hessian, projected (`harmonic`). Saddle points and
IRCs are driven by geomeTRIC through its ASE engine (TRIC/DLC internal coordinates; its default
convergence criteria), with geomeTRIC's logging confined to the task folder (`geometric_support`).

A saddle point is only accepted with exactly one imaginary mode stronger than the threshold
(options.imaginary_threshold_cm1): geomeTRIC's "converged" alone does not say it found one.

IRC direction convention: "forward" is the half of the path that leaves the TS along +v, where v is
the TS's imaginary normal mode as a Cartesian displacement (from our own projected Hessian), with
its sign fixed so that its largest component is positive (`harmonic.oriented`: first such
component in atom order x, y, z). geomeTRIC runs both halves in one go; we take the one requested,
deciding by the sign of (first step of half A - first step of half B) . v, after aligning both
steps onto the TS.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import minimize_rotation_and_translation
from ase.calculators.calculator import CalculationFailed, InputError
from ase.units import Bohr, Hartree

from pipe_rules.contracts.xyz import xyz_dict_from_atoms
from pipe_rules.engines import geometric_support, harmonic
from pipe_rules.engines.base import EngineFailure, EngineResult, FailureClass, InvalidRequest
from pipe_rules.engines.common import frequency_data
from pipe_rules.engines.tblite.core import (
    calculator,
    check_geometry,
    classify,
    energy_of,
    system,
    write_xyz,
)

ESS = FailureClass.ESS
IRC_DIRECTIONS = ("forward", "reverse")


def run_family(family: str, method: str, payload: dict, settings: dict, workdir: Path) -> EngineResult:
    """Dispatch; tblite's exceptions become classified EngineFailures here, for every family."""
    from pipe_rules.engines.tblite import paths as tblite_paths

    runners = {"species_freq": species_freq, "ts_opt": ts_opt, "irc": irc,
               "rotor_scan_1d": tblite_paths.rotor_scan, "ts_guess_batch_method": tblite_paths.ts_guesses}
    try:
        return runners[family](method, payload, settings, Path(workdir))
    except (CalculationFailed, InputError) as exc:
        raise classify(exc, settings) from None


def species_freq(method: str, payload: dict, settings: dict, workdir: Path) -> EngineResult:
    atoms, charge, multiplicity = system(payload)
    atoms.calc = calculator(method, charge, multiplicity, settings)
    energy = energy_of(atoms)
    freqs, _, _ = _frequencies(atoms, workdir)
    data = frequency_data(freqs, settings["imaginary_threshold_cm1"])
    return EngineResult(energy_hartree=energy, geometry=payload["xyz"], converged=True, data=data,
                        native_outputs=["hessian_ev_per_a2.txt"])


def ts_opt(method: str, payload: dict, settings: dict, workdir: Path) -> EngineResult:
    atoms, charge, multiplicity = system(payload)
    calc = calculator(method, charge, multiplicity, settings)
    progress = _geometric(atoms, calc, workdir, "ts", settings, "saddle-point search", transition=True)
    atoms.set_positions(np.asarray(progress.xyzs[-1]))
    check_geometry(atoms, "the optimised saddle point")
    atoms.calc = calculator(method, charge, multiplicity, settings)
    energy = energy_of(atoms)
    freqs, _, _ = _frequencies(atoms, workdir)
    freq = frequency_data(freqs, settings["imaginary_threshold_cm1"])
    _require_one_imaginary(freq, "the optimised saddle point", settings, "start from a better TS guess")
    write_xyz(workdir / "ts.xyz", atoms, f"energy={energy!r} Eh {method} tblite geomeTRIC saddle point")
    data = {"imaginary_frequency_cm1": freq["frequencies_cm1"][0], "frequencies_cm1": freq["frequencies_cm1"],
            "n_steps": len(progress.xyzs) - 1, "n_imaginary": 1, "zpe_hartree": freq["zpe_hartree"]}
    geometry = xyz_dict_from_atoms(atoms.get_chemical_symbols(), atoms.get_positions())
    return EngineResult(energy_hartree=energy, geometry=geometry, converged=True, data=data,
                        native_outputs=_existing(workdir, ["ts.log", "ts_optim.xyz", "ts.xyz",
                                                           "hessian_ev_per_a2.txt"]))


def irc(method: str, payload: dict, settings: dict, workdir: Path) -> EngineResult:
    direction = payload.get("direction")
    if direction not in IRC_DIRECTIONS:
        raise InvalidRequest(f"tblite engine: irc payload 'direction' must be one of {', '.join(IRC_DIRECTIONS)}, "
                         f"got {direction!r}")
    ts, charge, multiplicity = system(payload)
    ts.calc = calculator(method, charge, multiplicity, settings)
    ts_energy = energy_of(ts)
    freqs, modes, hessian = _frequencies(ts, workdir)
    freq = frequency_data(freqs, settings["imaginary_threshold_cm1"])
    _require_one_imaginary(freq, "the IRC's starting geometry", settings, "give it a TS from ts_opt")
    mode = harmonic.oriented(modes[0])
    hessian_au = hessian * Bohr**2 / Hartree  # geomeTRIC reads Eh/Bohr^2; it then skips its own Hessian
    calc = calculator(method, charge, multiplicity, settings)
    progress = _geometric(ts, calc, workdir, "irc", settings, "IRC", irc=True, hess_data=hessian_au.tolist())
    frames = [np.asarray(x, dtype=float) for x in progress.xyzs]
    energies = [float(e) for e in progress.qm_energies]
    start = ts.get_positions()
    split = int(np.argmin([np.abs(x - start).max() for x in frames]))  # geomeTRIC keeps the TS frame as given
    halves = {"a": list(range(split, -1, -1)), "b": list(range(split, len(frames)))}
    if len(halves["a"]) < 2 or len(halves["b"]) < 2 or np.abs(frames[split] - start).max() > 1e-6:
        raise EngineFailure(ESS, "irc_failed", f"geomeTRIC's IRC path ({len(frames)} frames) does not run from "
                            "the TS in two directions; see irc.log")
    step_a = _aligned(ts, frames[halves["a"][1]]) - start
    step_b = _aligned(ts, frames[halves["b"][1]]) - start
    forward = "a" if float(np.sum((step_a - step_b) * mode)) > 0 else "b"
    chosen = halves[forward] if direction == "forward" else halves["b" if forward == "a" else "a"]
    symbols = ts.get_chemical_symbols()
    path = [xyz_dict_from_atoms(symbols, frames[i]) for i in chosen]
    path_energies = [energies[i] for i in chosen]
    data = {"direction": direction, "path_energies_hartree": path_energies, "path_geometries": path,
            "end_geometry": path[-1], "end_energy_hartree": path_energies[-1], "ts_energy_hartree": ts_energy,
            "imaginary_frequency_cm1": freq["frequencies_cm1"][0], "n_points": len(chosen)}
    return EngineResult(energy_hartree=path_energies[-1], geometry=path[-1], converged=True, data=data,
                        native_outputs=_existing(workdir, ["irc.log", "irc_irc.xyz", "hessian_ev_per_a2.txt"]))


def _frequencies(atoms: Atoms, workdir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected frequencies (cm-1), Cartesian modes and the Hessian (eV/A^2, kept as a native output)."""
    hessian = harmonic.finite_difference_hessian(atoms, workdir)
    np.savetxt(workdir / "hessian_ev_per_a2.txt", hessian,
               header="Cartesian Hessian, eV/A^2, tblite central differences (ASE Vibrations)")
    freqs, modes = harmonic.frequencies(hessian, atoms.get_masses(), atoms.get_positions())
    return freqs, modes, hessian


def _require_one_imaginary(freq: dict, what: str, settings: dict, advice: str) -> None:
    if freq["n_imaginary"] != 1:
        strong = [round(f, 1) for f in freq["frequencies_cm1"] if f < -settings["imaginary_threshold_cm1"]]
        raise EngineFailure(ESS, "wrong_imaginary_count",
                            f"{what} needs exactly one imaginary mode stronger than "
                            f"{settings['imaginary_threshold_cm1']:g} cm-1, found {freq['n_imaginary']} "
                            f"({strong} cm-1); {advice}")


def _geometric(atoms: Atoms, calc, workdir: Path, prefix: str, settings: dict, what: str, **kwargs):
    """geomeTRIC's optimiser on tblite, its files named `prefix*` in workdir; returns its progress."""
    from geometric.ase_engine import EngineASE
    from geometric.optimize import run_optimizer

    engine = EngineASE(geometric_support.molecule(atoms.get_chemical_symbols(), atoms.get_positions()), calc)
    with _geometric_folder(workdir) as folder, geometric_support.quiet_logging(folder) as log_ini:
        try:
            return run_optimizer(customengine=engine, input=str(folder / prefix), logIni=log_ini,
                                 maxiter=settings["max_steps"], **kwargs)
        except (CalculationFailed, InputError):
            raise
        except Exception as exc:  # noqa: BLE001 - geomeTRIC's errors are classified, others propagate
            failure = geometric_support.classify(exc, what, settings["max_steps"])
            if failure is None:
                raise
            failure.last_geometry, failure.last_energy_hartree = geometric_support.last_frame(
                folder / f"{prefix}_optim.xyz")
            raise failure from None


@contextmanager
def _geometric_folder(workdir: Path):
    """geomeTRIC's IRC rewrites 'forward' anywhere in its file paths (optimize.py:
    prefix.replace('_forward', ''), dirname.replace('forward', 'backward')), so a task folder such as
    `<label>_irc_forward/` made it write to folders that do not exist. Such a folder gets a scratch
    directory instead, and its files are moved back into the task folder afterwards."""
    if "forward" not in str(workdir.resolve()):
        yield workdir
        return
    scratch = Path(tempfile.mkdtemp(prefix="pipe_rules_geometric_"))
    try:
        yield scratch
    finally:
        for item in scratch.iterdir():
            shutil.move(str(item), str(workdir / item.name))
        shutil.rmtree(scratch, ignore_errors=True)


def _aligned(reference: Atoms, positions: np.ndarray) -> np.ndarray:
    """positions rotated and translated onto reference (IRC frames may drift rigidly)."""
    moved = Atoms(reference.get_chemical_symbols(), positions=positions)
    minimize_rotation_and_translation(reference, moved)
    return moved.get_positions()


def _existing(workdir: Path, names: list[str]) -> list[str]:
    return [name for name in names if (workdir / name).exists()]
