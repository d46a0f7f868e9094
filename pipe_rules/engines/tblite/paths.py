"""tblite along a path of geometries: 1D rotor scans and interpolated TS guesses.

Rotor scans use ASE's FixInternals with BFGS at each angle rather than geomeTRIC's $scan: on this
machine (qc_engines.md) ethane took 0.3 s (12 points) against 2.0 s, butane 0.9 s against 5.0 s,
every point converged, and the result is the same relaxed profile (butane barrier 4.8 vs 4.95
kcal/mol). Each point starts from the previous point's optimised geometry, rotated rigidly by one
increment (the side of the bond holding atom l moves), so the scan follows one continuous path.

TS guesses interpolate reactant -> product (ASE's linear or IDPP interpolation, product first
rotated and translated onto the reactant) and rank the images by their tblite single point energy.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.constraints import FixInternals
from ase.data import covalent_radii
from ase.optimize import BFGS
from ase.units import Hartree, kJ, mol

from pipe_rules.contracts.xyz import xyz_dict_from_atoms
from pipe_rules.engines.base import EngineFailure, EngineResult, FailureClass, InvalidRequest
from pipe_rules.engines.common import number_option
from pipe_rules.engines.tblite.core import calculator, check_geometry, energy_of, system

ESS = FailureClass.ESS
BOND_FACTOR = 1.2  # bonded when closer than 1.2 x the sum of covalent radii
MAX_ANGLE_ERROR_DEG = 0.1  # FixInternals holds the dihedral far tighter; more means the constraint failed
HARTREE_TO_KJ_MOL = Hartree / (kJ / mol)  # 2625.5 (ASE's CODATA 2014 units)


def rotor_scan(method: str, payload: dict, settings: dict, workdir: Path) -> EngineResult:
    atoms, charge, multiplicity = system(payload)
    torsion = _torsion(payload, len(atoms))
    resolution = _resolution(payload.get("resolution_deg"))
    mask = _rotating_side(atoms, torsion)
    atoms.calc = calculator(method, charge, multiplicity, settings)
    start = atoms.get_dihedral(*torsion)
    energies, geometries, converged, angles = [], [], [], []
    symbols = atoms.get_chemical_symbols()
    for point in range(round(360 / resolution)):
        target = start + point * resolution
        atoms.set_constraint()
        atoms.set_dihedral(*torsion, target, mask=mask)
        atoms.set_constraint(FixInternals(dihedrals_deg=[[atoms.get_dihedral(*torsion), list(torsion)]]))
        with BFGS(atoms, logfile=str(workdir / "scan.log")) as optimizer:
            ok = bool(optimizer.run(fmax=settings["fmax"], steps=settings["max_steps"]))
        error = abs((atoms.get_dihedral(*torsion) - target + 180) % 360 - 180)
        if not ok or error > MAX_ANGLE_ERROR_DEG:
            problem = (f"BFGS stopped after {optimizer.nsteps} steps above fmax {settings['fmax']} eV/A"
                       if not ok else f"the dihedral drifted {error:.3f} deg from its target")
            raise EngineFailure(ESS, "scan_point_not_converged",
                                f"rotor scan point {point} ({target % 360:.1f} deg of torsion {list(torsion)}): "
                                f"{problem}; raise options.max_steps (now {settings['max_steps']}) or check "
                                "that the torsion's atoms do not clash at this angle")
        check_geometry(atoms, f"rotor scan point {point}")
        energies.append(energy_of(atoms))
        geometries.append(xyz_dict_from_atoms(symbols, atoms.get_positions()))
        converged.append(ok)
        angles.append(round(float(target) % 360, 10))
    atoms.set_constraint()
    lowest = min(energies)
    data = {"torsion": list(torsion), "resolution_deg": resolution, "rotor_index": payload.get("rotor_index"),
            "angles_deg": angles, "energies_hartree": energies,
            "relative_energies_kj_mol": [(e - lowest) * HARTREE_TO_KJ_MOL for e in energies],
            "geometries": geometries, "constrained_converged": converged,
            "lowest_point_index": int(np.argmin(energies))}
    return EngineResult(energy_hartree=energies[0], geometry=geometries[0], converged=True, data=data,
                        native_outputs=["scan.log"])


def ts_guesses(method: str, payload: dict, settings: dict, workdir: Path) -> EngineResult:
    from ase.io import write
    from ase.mep import NEB

    reactant, charge, multiplicity = system(payload, "reactant_xyz")
    product, _, _ = system(payload, "product_xyz")
    if reactant.get_chemical_symbols() != product.get_chemical_symbols():
        raise InvalidRequest("tblite engine: reactant_xyz and product_xyz must list the same elements in the same "
                         "order (atom i of the reactant is atom i of the product); map the atoms first")
    how = payload.get("method", "idpp")
    if how not in ("idpp", "linear"):
        raise InvalidRequest(f"tblite engine: ts_guess_batch_method payload 'method' must be 'idpp' or 'linear', "
                         f"got {how!r}")
    n_images = number_option("tblite", "payload n_images", payload.get("n_images", 9), integer=True)
    images = [reactant] + [reactant.copy() for _ in range(n_images)] + [product]
    NEB(images, remove_rotation_and_translation=True, method="improvedtangent").interpolate(method=how)
    energies = []
    for index, image in enumerate(images):
        check_geometry(image, f"interpolated image {index} of {n_images + 1}")
        image.calc = calculator(method, charge, multiplicity, settings)
        energies.append(energy_of(image))
    write(workdir / "images.xyz", images, format="xyz")
    symbols = reactant.get_chemical_symbols()
    guesses = [{"index": i, "energy_hartree": energies[i],
                "geometry": xyz_dict_from_atoms(symbols, images[i].get_positions())}
               for i in range(1, n_images + 1)]
    best = max(guesses, key=lambda guess: guess["energy_hartree"])
    data = {"guesses": guesses, "highest_index": best["index"], "method": how, "n_images": n_images,
            "reactant_energy_hartree": energies[0], "product_energy_hartree": energies[-1]}
    return EngineResult(energy_hartree=best["energy_hartree"], geometry=best["geometry"], converged=True,
                        data=data, native_outputs=["images.xyz"])


def _torsion(payload: dict, n_atoms: int) -> tuple[int, int, int, int]:
    torsion = payload.get("torsion")
    if (not isinstance(torsion, (list, tuple)) or len(torsion) != 4 or len(set(torsion)) != 4
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_atoms for i in torsion)):
        raise InvalidRequest(f"tblite engine: payload 'torsion' must be four different 0-based atom indices "
                         f"below {n_atoms}, got {torsion!r}")
    return tuple(torsion)  # type: ignore[return-value]


def _resolution(value) -> float:
    """The payload's resolution only (never an option: one task, one scan grid)."""
    resolution = number_option("tblite", "payload resolution_deg", value)
    points = 360 / resolution
    if resolution > 180 or not math.isclose(points, round(points), abs_tol=1e-9):
        raise InvalidRequest(f"tblite engine: payload resolution_deg {value!r} must divide 360 evenly into at least "
                         "2 points (e.g. 10, 15, 30, 120)")
    return resolution


def _rotating_side(atoms: Atoms, torsion: tuple[int, int, int, int]) -> list[bool]:
    """Atoms on atom k's side of the j-k bond (they move when the dihedral is set)."""
    i, j, k, l = torsion
    positions = atoms.get_positions()
    radii = covalent_radii[atoms.get_atomic_numbers()]
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    bonded = distances < BOND_FACTOR * (radii[:, None] + radii[None])
    np.fill_diagonal(bonded, False)
    if not bonded[j, k]:
        raise InvalidRequest(f"tblite engine: torsion atoms {j} and {k} are not bonded "
                         f"({distances[j, k]:.2f} A apart); the rotor's axis must be a bond")
    bonded[j, k] = bonded[k, j] = False
    side, todo = {k}, [k]
    while todo:
        for neighbour in np.flatnonzero(bonded[todo.pop()]):
            if int(neighbour) not in side:
                side.add(int(neighbour))
                todo.append(int(neighbour))
    if j in side:
        raise InvalidRequest(f"tblite engine: bond {j}-{k} is in a ring; a 1D rotor scan needs a bond whose two "
                         "sides are joined by that bond only")
    if l not in side or i in side:
        raise InvalidRequest(f"tblite engine: torsion {list(torsion)} must run i-j-k-l along bonds: atom {i} on "
                         f"atom {j}'s side and atom {l} on atom {k}'s side of the {j}-{k} bond")
    for a, b, c in ((i, j, k), (j, k, l)):
        if atoms.get_angle(a, b, c) > 175:
            raise InvalidRequest(f"tblite engine: the angle {a}-{b}-{c} is nearly linear "
                             f"({atoms.get_angle(a, b, c):.1f} deg), so torsion {list(torsion)} is undefined")
    return [index in side for index in range(len(atoms))]
