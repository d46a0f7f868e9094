"""Checks and bookkeeping that every quantum-chemistry engine needs, written once.

Engines differ in how they fail: tblite runs an odd electron count as a doublet without a word,
PySCF raises, an external program may crash minutes later. Checking the payload here, before any
engine starts, makes the same bad species fail the same way (ESS `multiplicity_inconsistent`,
ESS `too_close_atoms`, InvalidRequest for a malformed payload) whichever engine a run uses.

Only numpy, ase.data and the project's xyz module are imported: the PySCF and external engines use
this module too and must not pay for tblite.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from ase.data import atomic_numbers
from ase.units import Hartree, invcm

from pipe_rules.contracts.xyz import validate_xyz_dict
from pipe_rules.engines.base import EngineFailure, FailureClass, InvalidRequest

ESS = FailureClass.ESS
MIN_DISTANCE_A = 0.5  # no bond is shorter (H2: 0.74 A); closer atoms mean a broken geometry
IMAGINARY_THRESHOLD_CM1 = 50.0  # imaginary modes weaker than this are numerical noise, not saddle points


def parse_system(engine: str, payload: dict, key: str = "xyz") -> tuple[dict, int, int]:
    """Return (xyz dict, charge, multiplicity) of payload[key]; InvalidRequest for malformed input,
    EngineFailure(ESS) for a species whose charge and multiplicity contradict its electron count."""
    if key not in payload:
        raise InvalidRequest(f"{engine} engine: the task payload has no {key!r} geometry")
    xyz = payload[key]
    try:
        validate_xyz_dict(xyz)
    except ValueError as exc:
        raise InvalidRequest(f"{engine} engine: payload {key!r} is invalid: {exc}") from None
    charge, multiplicity = payload.get("charge", 0), payload.get("multiplicity", 1)
    for name, value, low in (("charge", charge, None), ("multiplicity", multiplicity, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            raise InvalidRequest(f"{engine} engine: payload {name!r} must be an integer"
                             f"{f' >= {low}' if low else ''}, got {value!r}")
    electrons = sum(atomic_numbers[s] for s in xyz["symbols"]) - charge
    problem = spin_problem(electrons, multiplicity)
    if problem:
        raise EngineFailure(ESS, "multiplicity_inconsistent",
                            f"{formula(xyz['symbols'])} with charge {charge} has {electrons} electrons: {problem}; "
                            "fix the species' charge or multiplicity")
    check_distances(xyz["symbols"], np.asarray(xyz["coords"], dtype=float))
    return xyz, charge, multiplicity


def formula(symbols: list[str]) -> str:
    """'CH3' for ['C', 'H', 'H', 'H']: elements in order of first appearance, for messages."""
    counts: dict[str, int] = {}
    for symbol in symbols:
        counts[symbol] = counts.get(symbol, 0) + 1
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in counts.items())


def spin_problem(electrons: int, multiplicity: int) -> str | None:
    """Why `electrons` cannot have this multiplicity, or None when they can."""
    unpaired = multiplicity - 1
    if electrons < 0:
        return "a charge cannot remove more electrons than the atoms have"
    if unpaired > electrons:
        return f"multiplicity {multiplicity} needs {unpaired} unpaired electrons"
    if (electrons - unpaired) % 2:
        parity, needed = ("odd", "even (2, 4, ...)") if electrons % 2 else ("even", "odd (1, 3, ...)")
        return f"an {parity} electron count needs an {needed} multiplicity, not {multiplicity}"
    return None


def check_distances(symbols: list[str], positions: np.ndarray, what: str = "the geometry") -> None:
    """Engines happily compute atoms 0.01 A apart (tblite) or die with a singular matrix (PySCF):
    catch it first, with a message that names the atoms."""
    if len(positions) < 2:
        return
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    distances[np.diag_indices(len(positions))] = np.inf
    i, j = np.unravel_index(np.argmin(distances), distances.shape)
    if distances[i, j] < MIN_DISTANCE_A:
        raise EngineFailure(ESS, "too_close_atoms",
                            f"in {what}, atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are "
                            f"{distances[i, j]:.3f} A apart, closer than {MIN_DISTANCE_A} A; check the "
                            "geometry's units (Angstrom) and atom order")


def frequency_data(frequencies_cm1: Any, threshold_cm1: float) -> dict[str, Any]:
    """The species_freq contract from vibrational frequencies (cm-1, imaginary ones negative,
    translations and rotations already removed). Modes weaker than the threshold still appear in
    the list but are not counted as imaginary: they are grid or step-size noise."""
    freqs = [float(f) for f in np.asarray(frequencies_cm1, dtype=float)]
    imaginary = [f for f in freqs if f < -threshold_cm1]
    zpe = 0.5 * sum(f for f in freqs if f > 0) * invcm / Hartree
    return {"frequencies_cm1": freqs, "n_imaginary": len(imaginary), "zpe_hartree": zpe,
            "imaginary_flag": bool(imaginary), "imaginary_threshold_cm1": float(threshold_cm1)}


def number_option(engine: str, name: str, value: Any, *, integer: bool = False, minimum: float = 0.0,
                  inclusive: bool = False) -> Any:
    """Validate one numeric option; the InvalidRequest names the option and what it must be."""
    kind = "an integer" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and math.isfinite(value) and (value >= minimum if inclusive else value > minimum):
        return int(value) if integer else float(value)
    relation = ">=" if inclusive else ">"
    raise InvalidRequest(f"{engine} engine: option {name} must be {kind} {relation} {minimum:g}, got {value!r}")


def check_known_options(engine: str, options: dict, known: dict) -> dict[str, Any]:
    """Defaults merged with the given options; a typo fails the task instead of being ignored."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidRequest(f"{engine} engine: unknown option(s) {', '.join(map(repr, unknown))}; "
                         f"it understands {', '.join(sorted(known))}")
    return {**known, **options}


def fresh_path(workdir: Path, stem: str) -> Path:
    """A name not yet used in workdir. ASE's Vibrations silently reuses the displacement cache of an
    earlier run with the same name, which would return another geometry's frequencies."""
    workdir = Path(workdir)
    candidate, n = workdir / stem, 1
    while candidate.exists():
        candidate, n = workdir / f"{stem}-{n}", n + 1
    return candidate
