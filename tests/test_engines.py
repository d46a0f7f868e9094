"""Engines and staging chemistry against the real libraries (tblite, ASE, RDKit): no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipe_rules.contracts.xyz import (
    atoms_from_xyz_dict,
    validate_xyz_dict,
    xyz_dict_from_atoms,
    xyz_dict_from_text,
)
from pipe_rules.engines import UnknownEngineError, get_engine, known_engines
from pipe_rules.engines.base import EngineFailure, FailureClass, InvalidRequest
from pipe_rules.inputs.chem import charge_and_multiplicity_from_smiles, embed_conformers

ETHANOL = """9
ethanol
C  -0.0014  -0.4079   0.0000
C   1.2109   0.5208   0.0000
O  -1.1884   0.3836   0.0000
H  -0.0281  -1.0522   0.8837
H  -0.0281  -1.0522  -0.8837
H   1.1953   1.1626   0.8846
H   1.1953   1.1626  -0.8846
H   2.1384  -0.0527   0.0000
H  -1.9657  -0.1977   0.0000
"""
PROBE = Path(__file__).parent / "data" / "thread_probe.py"
CH3 = "C 0 0 0\nH 1.079 0 0\nH -0.5395 0.9344 0\nH -0.5395 -0.9344 0"


@pytest.fixture(scope="module")
def tblite():
    return get_engine("tblite")


@pytest.fixture(scope="module")
def butane() -> dict:
    return embed_conformers("CCCC", 4, seed=7)[0]


def sp_payload(text: str, charge: int = 0, multiplicity: int = 1) -> dict:
    return {"xyz": xyz_dict_from_text(text), "charge": charge, "multiplicity": multiplicity}


def failure(engine, family: str, payload: dict, options: dict, workdir) -> EngineFailure:
    with pytest.raises(EngineFailure) as caught:
        engine.run(family, "GFN2-xTB", payload, options, workdir, 1)
    return caught.value


def test_single_point_equals_tblite_interface(tblite, tmp_path):
    from ase.units import Bohr
    from tblite.interface import Calculator

    payload = sp_payload(ETHANOL)
    result = tblite.run("species_sp", "GFN2-xTB", payload, {}, tmp_path, 1)
    atoms = atoms_from_xyz_dict(payload["xyz"])
    direct = Calculator("GFN2-xTB", atoms.get_atomic_numbers(), atoms.get_positions() / Bohr, charge=0, uhf=0)
    direct.set("verbosity", 0)
    assert result.energy_hartree == pytest.approx(direct.singlepoint().get("energy"), abs=1e-8)
    assert result.converged and result.geometry == payload["xyz"]
    assert result.native_outputs == ["final.xyz"] and (tmp_path / "final.xyz").read_text().startswith("9\n")
    json.dumps(result.data)


def test_conf_opt_converges_and_lowers_the_energy(tblite, butane, tmp_path):
    payload = {"xyz": butane, "charge": 0, "multiplicity": 1}
    start = tblite.run("conf_sp", "GFN2-xTB", payload, {}, tmp_path, 1).energy_hartree
    result = tblite.run("conf_opt", "GFN2-xTB", payload, {"fmax": 0.02}, tmp_path, 1)
    assert result.converged and result.energy_hartree < start
    assert result.data["initial_energy_hartree"] == pytest.approx(start, abs=1e-8)
    assert result.data["fmax_ev_per_angstrom"] <= 0.02 and result.data["n_steps"] >= 1
    validate_xyz_dict(result.geometry)
    assert result.geometry["symbols"] == butane["symbols"] and result.geometry["coords"] != butane["coords"]
    assert all((tmp_path / name).is_file() for name in result.native_outputs)
    json.dumps(result.geometry), json.dumps(result.data)


def test_scf_not_converged_is_ess(tblite, tmp_path):
    exc = failure(tblite, "species_sp", sp_payload(ETHANOL), {"max_iterations": 1}, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "scf_not_converged")
    assert "max_iterations" in exc.message


def test_optimiser_step_limit_is_ess(tblite, butane, tmp_path):
    payload = {"xyz": butane, "charge": 0, "multiplicity": 1}
    exc = failure(tblite, "conf_opt", payload, {"max_steps": 1}, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "max_opt_cycles")
    assert "max_steps" in exc.message
    # where BFGS stopped, for a restart: one step away from the input, and lower in energy
    assert exc.last_geometry["symbols"] == butane["symbols"] and exc.last_geometry["coords"] != butane["coords"]
    (tmp_path / "sp").mkdir()
    start = tblite.run("species_sp", "GFN2-xTB", payload, {}, tmp_path / "sp", 1).energy_hartree
    assert exc.last_energy_hartree < start


def test_wrong_multiplicity_is_caught_before_tblite_runs(tblite, tmp_path):
    exc = failure(tblite, "species_sp", sp_payload(CH3, multiplicity=1), {}, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "multiplicity_inconsistent")
    assert "9 electrons" in exc.message and "even" in exc.message
    assert tblite.run("species_sp", "GFN2-xTB", sp_payload(CH3, multiplicity=2), {}, tmp_path, 1).converged


def test_atoms_on_top_of_each_other_are_ess(tblite, tmp_path):
    exc = failure(tblite, "species_sp", sp_payload("H 0 0 0\nH 0 0 0.05"), {}, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "too_close_atoms")


def test_requests_the_engine_cannot_run_are_invalid_requests(tblite, tmp_path):
    payload = sp_payload(ETHANOL)
    with pytest.raises(InvalidRequest, match="cannot run family 'md_run'"):
        tblite.run("md_run", "GFN2-xTB", payload, {}, tmp_path, 1)
    with pytest.raises(InvalidRequest, match="no level 'B3LYP'.*GFN1-xTB"):
        tblite.run("species_sp", "B3LYP", payload, {}, tmp_path, 1)
    with pytest.raises(InvalidRequest, match="unknown option.*'fmx'"):
        tblite.run("conf_opt", "GFN2-xTB", payload, {"fmx": 0.1}, tmp_path, 1)


def test_embed_conformers_is_deterministic_and_finds_several(butane):
    first = embed_conformers("CCCC", 8, seed=3)
    assert json.dumps(first) == json.dumps(embed_conformers("CCCC", 8, seed=3))
    assert 1 < len(first) <= 8  # anti and two gauche; duplicates removed
    for xyz in first:
        validate_xyz_dict(xyz)
        assert xyz["symbols"].count("C") == 4 and xyz["isotopes"][0] in (1, 12)


def test_bad_smiles_names_the_smiles():
    with pytest.raises(ValueError, match=r"RDKit cannot parse SMILES 'C1CC'"):
        embed_conformers("C1CC", 2)
    with pytest.raises(ValueError, match="positive integer"):
        embed_conformers("CC", 0)


def test_charge_and_multiplicity_from_smiles():
    assert charge_and_multiplicity_from_smiles("CCO") == (0, 1)
    assert charge_and_multiplicity_from_smiles("[CH3]") == (0, 2)
    assert charge_and_multiplicity_from_smiles("[CH2]") == (0, 3)
    assert charge_and_multiplicity_from_smiles("C(=O)[O-]") == (-1, 1)


def test_xyz_text_round_trip_and_bad_line():
    xyz = xyz_dict_from_text(ETHANOL)
    assert xyz["symbols"][:3] == ["C", "C", "O"] and xyz["isotopes"][:3] == [12, 12, 16]
    text = "\n".join(f"{s} {x!r} {y!r} {z!r}" for s, (x, y, z) in zip(xyz["symbols"], xyz["coords"]))
    assert xyz_dict_from_text(text) == xyz  # the bare form parses to the same dict
    atoms = atoms_from_xyz_dict(xyz)
    assert xyz_dict_from_atoms(atoms.get_chemical_symbols(), atoms.get_positions()) == xyz
    with pytest.raises(ValueError, match=r"xyz line 4 'O 1\.0 2\.0' is not 'Element x y z'"):
        xyz_dict_from_text("3\ncomment\nH 0 0 0\nO 1.0 2.0\nH 1 1 1")
    with pytest.raises(ValueError, match="header says 3 atoms but 2"):
        xyz_dict_from_text("3\n\nH 0 0 0\nH 0 0 0.7")
    with pytest.raises(ValueError, match="atom 1: 'Xx' is not an element symbol"):
        validate_xyz_dict({"symbols": ["H", "Xx"], "coords": [[0, 0, 0], [0, 0, 1]]})
    with pytest.raises(ValueError, match=r"atom 0 \(H\): coordinates \[0, 0\]"):
        validate_xyz_dict({"symbols": ["H"], "coords": [[0, 0]]})


def test_noop_sleeps_fails_and_echoes(tmp_path):
    noop = get_engine("noop")
    xyz = xyz_dict_from_text("H 0 0 0\nH 0 0 0.74")
    started = time.monotonic()
    result = noop.run("irc", "any", {"xyz": xyz, "sleep_s": 0.3}, {}, tmp_path, 1)
    assert time.monotonic() - started >= 0.3  # it sleeps at least sleep_s (how much longer: load)
    assert (result.energy_hartree, result.geometry, result.converged) == (0.0, xyz, True)
    for fail in FailureClass:
        with pytest.raises(EngineFailure) as caught:
            noop.run("conf_opt", "x", {"fail": fail.value}, {}, tmp_path, 1)
        assert (caught.value.failure_class, caught.value.reason) == (fail, "injected_failure")
    with pytest.raises(InvalidRequest, match="'fail' must be one of ess, transient"):
        noop.run("conf_opt", "x", {"fail": "sometimes"}, {}, tmp_path, 1)
    assert noop.version()


def test_unknown_engine_lists_known_engines():
    with pytest.raises(UnknownEngineError, match="unknown engine 'nope'; known engines: external, noop, pyscf, tblite"):
        get_engine("nope")
    assert known_engines() == ["external", "noop", "pyscf", "tblite"]


def test_noop_engine_and_chem_do_not_import_heavy_libraries():
    code = ("import sys; from pipe_rules.engines import get_engine; import pipe_rules.inputs.chem; get_engine('noop')"
            ".run('species_sp', 'x', {}, {}, '.', 1); print(sorted(m for m in ('tblite', 'rdkit', 'ase') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("engine", ["tblite", "pyscf"])
def test_a_run_honours_cores(engine, tmp_path):
    """While the engine computes, every OpenMP and BLAS pool runs `cores` threads (fewer or more than
    the machine's default), and the worker's own counts are back afterwards for its next task."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    for cores in (1, 3):
        out = subprocess.run([sys.executable, str(PROBE), engine, str(cores), str(tmp_path)], env=env,
                             capture_output=True, text=True, check=True).stdout
        seen = json.loads(out)
        assert seen["during"], "the engine never reached its compute call"
        for pools in seen["during"]:
            assert {api for api, _ in pools} == {"openmp", "blas"}
            assert all(threads == cores for _, threads in pools), pools
        assert seen["after"] == seen["before"]
        assert np.isfinite(seen["energy"])
