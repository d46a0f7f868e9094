"""Harmonic frequencies from a Cartesian Hessian, with translations and rotations projected out.

ASE's Vibrations returns all 3N eigenvalues of the unprojected finite-difference Hessian: the six
(five for linear molecules) translations and rotations come out as noise of up to tens of cm-1,
sometimes imaginary, and sorted by eigenvalue they sit *after* a saddle point's large imaginary
mode, so "drop the six lowest" would drop the mode that matters. Projecting the rigid motions out
of the mass-weighted Hessian (Eckart conditions) leaves exactly 3N-6 (3N-5) vibrations; no
threshold decides which modes are "near zero".
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from ase import Atoms, units

from pipe_rules.engines.common import fresh_path

FD_STEP_A = 0.01  # ASE's default finite-difference step
_RANK_TOL = 1e-6  # relative singular value below which a rigid motion is dependent (linear molecules)


def finite_difference_hessian(atoms: Atoms, workdir: Path) -> np.ndarray:
    """Cartesian Hessian (3N x 3N, eV/A^2) by central differences of the forces (6N gradients).
    ASE's displacement cache goes to a fresh folder (a reused one would be read back silently) and
    is deleted afterwards: 6N+1 files per task is too many inodes for a large campaign."""
    from ase.vibrations import Vibrations

    cache = fresh_path(workdir, "vib")
    vib = Vibrations(atoms, name=str(cache), delta=FD_STEP_A, nfree=2)
    try:
        vib.run()
        hessian = vib.get_vibrations().get_hessian_2d()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0.5 * (hessian + hessian.T)


def frequencies(hessian_ev_a2: np.ndarray, masses_amu: np.ndarray,
                positions_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in cm-1 ascending, imaginary ones negative; Cartesian displacement of each mode,
    shape (modes, N, 3), each normalised to length 1)."""
    masses = np.asarray(masses_amu, dtype=float)
    positions = np.asarray(positions_a, dtype=float)
    n = len(masses)
    sqrt_m = np.sqrt(np.repeat(masses, 3))
    weighted = hessian_ev_a2 / np.outer(sqrt_m, sqrt_m)
    internal = _vibrational_basis(masses, positions)
    eigenvalues, vectors = np.linalg.eigh(internal.T @ weighted @ internal)
    # eigenvalue unit eV / (A^2 amu) -> angular frequency (1/s) -> wavenumber (1/cm)
    omega = np.sqrt(np.abs(eigenvalues) * units._e / units._amu) * 1e10
    wavenumbers = np.sign(eigenvalues) * omega / (2 * np.pi * units._c * 100)
    cartesian = (internal @ vectors).T / sqrt_m
    cartesian /= np.linalg.norm(cartesian, axis=1, keepdims=True)
    return wavenumbers, cartesian.reshape(-1, n, 3)


def _vibrational_basis(masses: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning the mass-weighted space orthogonal to the rigid motions."""
    n = len(masses)
    sqrt_m = np.sqrt(masses)[:, None]
    centred = positions - masses @ positions / masses.sum()
    rigid = []
    for axis in np.eye(3):
        rigid.append((np.tile(axis, (n, 1)) * sqrt_m).ravel())  # translation
        rigid.append((np.cross(axis, centred) * sqrt_m).ravel())  # rotation about the centre of mass
    u, s, _ = np.linalg.svd(np.array(rigid).T, full_matrices=True)
    rank = int(np.sum(s > _RANK_TOL * s.max()))  # 6; 5 for a linear molecule; 3 for an atom
    return u[:, rank:]


def oriented(mode: np.ndarray) -> np.ndarray:
    """The mode with a reproducible sign: its largest Cartesian component (the first one, in atom
    order x, y, z, among those within 0.1 % of the largest magnitude) made positive. Eigenvectors
    have arbitrary sign; this fixes "positive displacement" for the IRC direction convention."""
    flat = np.asarray(mode, dtype=float).ravel()
    magnitudes = np.abs(flat)
    first = int(np.flatnonzero(magnitudes >= magnitudes.max() * (1 - 1e-3))[0])
    return mode if flat[first] > 0 else -mode
