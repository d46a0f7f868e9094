"""A reader of ORCA text output for what the external engine and staging need: the final SCF
energy, the last geometry, the harmonic frequencies, optimisation convergence and normal end.

cclib 1.8.1 (the newest release) fails on ORCA 6 output (AssertionError or IndexError in its ORCA
parser, tests/data/external/README.md). FACCTs' orca-pi (OPI) reads ORCA's JSON property files,
which need ORCA's own orca_2json, not the text log a finished job leaves. So the external engine
tries cclib first and falls back to this reader for ORCA logs; it reads the sections ORCA 4-6
print the same way:

    Total Energy       :       -382.05510710761649 Eh ...   (after "SCF CONVERGED AFTER")
    Dispersion correction           -0.012345678            (DFT-D, added as cclib does)
    FINAL SINGLE POINT ENERGY      -382.055107107616        (closes one single point)
    CARTESIAN COORDINATES (ANGSTROEM) / El x y z lines
    VIBRATIONAL FREQUENCIES / "   6:    -516.84 cm**-1  ***imaginary mode***"
    THE OPTIMIZATION HAS CONVERGED, ****ORCA TERMINATED NORMALLY****

`energy_hartree` is the last SCF energy plus its dispersion correction (the external engine's
meaning of energy, as with cclib's scfenergies); post-HF energies are not used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

BANNER = "O   R   C   A"
_VERSION = re.compile(r"Program Version (\d+\.\d+\.\d+)")
_FREQ = re.compile(r"^\s*(\d+):\s+(-?\d+\.\d+)\s+cm\*\*-1")
_ATOM = re.compile(r"^\s*([A-Z][a-z]?)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)\s*$")


@dataclass
class OrcaOutput:
    version: str = ""
    energy_hartree: float | None = None  # last SCF energy (+ dispersion correction)
    final_single_point_hartree: float | None = None  # ORCA's FINAL SINGLE POINT ENERGY (post-HF included)
    symbols: list[str] = field(default_factory=list)
    coords: list[list[float]] = field(default_factory=list)  # Angstrom, last geometry printed
    n_geometries: int = 0
    frequencies_cm1: list[float] | None = None  # without the translations and rotations
    optimisation_converged: bool = False
    terminated_normally: bool = False


def is_orca_output(text: str) -> bool:
    return BANNER in text[:20000]


def read_orca_output(path: Path | str) -> OrcaOutput:
    """Parse one ORCA output; ValueError when it holds no geometry (not an ORCA log, or empty)."""
    lines = Path(path).read_text(errors="replace").splitlines()
    out = OrcaOutput()
    scf: float | None = None
    dispersion = 0.0
    i = 0
    while i < len(lines):
        line = lines[i]
        if not out.version and (found := _VERSION.search(line)):
            out.version = found.group(1)
        elif "SCF CONVERGED AFTER" in line or "SCF NOT CONVERGED AFTER" in line:
            dispersion = 0.0
        elif line.startswith("Total Energy       :"):
            scf = float(line.split()[3])
        elif line.strip().startswith("Dispersion correction") and len(line.split()) >= 3:
            try:
                dispersion = float(line.split()[-1])
            except ValueError:
                pass
        elif line.startswith("FINAL SINGLE POINT ENERGY"):
            out.final_single_point_hartree = float(line.split()[4])
            if scf is not None:
                out.energy_hartree = scf + dispersion
        elif line.strip() == "CARTESIAN COORDINATES (ANGSTROEM)":
            i = _geometry(lines, i + 2, out)
            continue
        elif line.strip() == "VIBRATIONAL FREQUENCIES":
            i = _frequencies(lines, i + 1, out)
            continue
        elif "THE OPTIMIZATION HAS CONVERGED" in line:
            out.optimisation_converged = True
        elif "ORCA TERMINATED NORMALLY" in line:
            out.terminated_normally = True
        i += 1
    if not out.symbols:
        raise ValueError(f"{Path(path).name}: no 'CARTESIAN COORDINATES (ANGSTROEM)' block (is it an ORCA output?)")
    if out.frequencies_cm1 is not None:
        out.frequencies_cm1 = out.frequencies_cm1[_rigid_modes(out.coords):]
    return out


def _geometry(lines: list[str], i: int, out: OrcaOutput) -> int:
    symbols, coords = [], []
    while i < len(lines) and (found := _ATOM.match(lines[i])):
        symbols.append(found.group(1))
        coords.append([float(found.group(k)) for k in (2, 3, 4)])
        i += 1
    if symbols:
        out.symbols, out.coords = symbols, coords
        out.n_geometries += 1
    return i


def _frequencies(lines: list[str], i: int, out: OrcaOutput) -> int:
    freqs: list[float] = []
    started = False
    while i < len(lines):
        found = _FREQ.match(lines[i])
        if found:
            started = True
            freqs.append(float(found.group(2)))
        elif started and not lines[i].strip():
            break
        i += 1
    out.frequencies_cm1 = freqs
    return i


def _rigid_modes(coords: list[list[float]]) -> int:
    """ORCA lists 3N modes; the first 6 (5 for a linear molecule) are translations and rotations."""
    if len(coords) < 3:
        return 3 * len(coords) - 1 if len(coords) == 2 else 3
    import numpy as np

    xyz = np.asarray(coords)
    centred = xyz - xyz.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return 5 if singular[1] < 1e-3 * max(singular[0], 1e-12) else 6
