"""The families beyond single points, against the real engines (tblite, geomeTRIC, ASE, PySCF, cclib).

Reference values come from independent direct calls in the tests (ASE Vibrations, a rigid ASE
rotation, a bare PySCF SCF, the numbers printed in real program logs), not from the engine code.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from pipe_rules.contracts.xyz import (
    atoms_from_xyz_dict,
    validate_xyz_dict,
    xyz_dict_from_atoms,
    xyz_dict_from_text,
)
from pipe_rules.engines import get_engine, known_engines
from pipe_rules.engines.base import EngineFailure, FailureClass

DATA = Path(__file__).parent / "data" / "external"
KCAL_PER_EV = 23.060548
WATER = "O 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469"
HCN_GUESS = "C 0 0 0\nN 1.18 0 0\nH 0.59 1.0 0"  # crude saddle-point guess: H bridging C and N
GFN2_WATER_CM1 = (1538.7, 3643.4, 3651.7)  # GFN2-xTB harmonic frequencies of its own minimum


def payload(xyz: dict | str, charge: int = 0, multiplicity: int = 1, **extra) -> dict:
    xyz = xyz_dict_from_text(xyz) if isinstance(xyz, str) else xyz
    return {"xyz": xyz, "charge": charge, "multiplicity": multiplicity, **extra}


def fails(engine, family: str, level: str, data: dict, options: dict, workdir: Path) -> EngineFailure:
    with pytest.raises(EngineFailure) as caught:
        engine.run(family, level, data, options, workdir, 1)
    return caught.value


def folder(parent: Path, name: str) -> Path:
    """A task's own folder, as the worker makes one per attempt."""
    path = parent / name
    path.mkdir()
    return path


def h_distances(xyz: dict) -> tuple[float, float]:
    """(H-C, H-N) of an HCN/HNC geometry ordered C, N, H."""
    c, n, h = np.asarray(xyz["coords"])
    return float(np.linalg.norm(h - c)), float(np.linalg.norm(h - n))


@pytest.fixture(scope="module")
def tblite():
    return get_engine("tblite")


@pytest.fixture(scope="module")
def water_minimum(tblite, tmp_path_factory) -> dict:
    result = tblite.run("conf_opt", "GFN2-xTB", payload(WATER), {"fmax": 0.0005}, tmp_path_factory.mktemp("w"), 1)
    return result.geometry


@pytest.fixture(scope="module")
def hcn_ts(tblite, tmp_path_factory):
    return tblite.run("ts_opt", "GFN2-xTB", payload(HCN_GUESS), {}, tmp_path_factory.mktemp("ts"), 1)


# ---------------------------------------------------------------- tblite: frequencies, TS, IRC


def test_water_frequencies_match_ase_vibrations(tblite, water_minimum, tmp_path):
    from ase.vibrations import Vibrations
    from tblite.ase import TBLite

    result = tblite.run("species_freq", "GFN2-xTB", payload(water_minimum), {}, folder(tmp_path, "engine"), 1)
    data = result.data
    assert result.converged and data["n_imaginary"] == 0 and data["imaginary_flag"] is False
    assert len(data["frequencies_cm1"]) == 3  # 3N-6: translations and rotations are gone
    assert data["frequencies_cm1"] == pytest.approx(GFN2_WATER_CM1, abs=5)
    atoms = atoms_from_xyz_dict(water_minimum)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    direct = Vibrations(atoms, name=str(folder(tmp_path, "direct")))
    direct.run()
    assert data["frequencies_cm1"] == pytest.approx(np.real(direct.get_frequencies()[-3:]), abs=0.1)
    assert data["zpe_hartree"] == pytest.approx(0.5 * sum(GFN2_WATER_CM1) / 219474.63, rel=2e-3)
    json.dumps(data)


@pytest.mark.slow
def test_ts_opt_finds_the_hcn_saddle_point(hcn_ts):
    data = hcn_ts.data
    assert hcn_ts.converged and data["n_imaginary"] == 1 and data["n_steps"] >= 1
    assert data["imaginary_frequency_cm1"] == pytest.approx(-1426, abs=40)  # qc_engines.md: 1426i cm-1
    assert data["imaginary_frequency_cm1"] == data["frequencies_cm1"][0] and len(data["frequencies_cm1"]) == 3
    h_c, h_n = h_distances(hcn_ts.geometry)
    assert 1.0 < h_c < 1.4 and 1.0 < h_n < 1.4  # H still bridges C and N
    json.dumps(data)


@pytest.mark.slow
def test_species_freq_of_a_saddle_point_is_flagged_not_failed(tblite, hcn_ts, tmp_path):
    result = tblite.run("species_freq", "GFN2-xTB", payload(hcn_ts.geometry), {}, tmp_path, 1)
    assert result.converged and result.data["imaginary_flag"] is True and result.data["n_imaginary"] == 1
    assert result.data["frequencies_cm1"][0] < -1000
    weak = tblite.run("species_freq", "GFN2-xTB", payload(hcn_ts.geometry), {"imaginary_threshold_cm1": 2000},
                      tmp_path, 1)  # same folder again: a fresh displacement cache, same numbers
    assert weak.data["n_imaginary"] == 0 and weak.data["frequencies_cm1"] == result.data["frequencies_cm1"]


def test_ts_opt_of_a_minimum_has_the_wrong_imaginary_count(tblite, water_minimum, tmp_path):
    exc = fails(tblite, "ts_opt", "GFN2-xTB", payload(water_minimum), {}, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "wrong_imaginary_count")
    assert "found 0" in exc.message


@pytest.mark.slow
def test_irc_ends_are_hcn_and_hnc_and_the_halves_are_deterministic(tblite, hcn_ts, tmp_path):
    ends = {}
    for direction in ("forward", "reverse"):
        result = tblite.run("irc", "GFN2-xTB", payload(hcn_ts.geometry, direction=direction), {},
                            folder(tmp_path, direction), 1)
        data = result.data
        assert data["direction"] == direction and result.geometry == data["end_geometry"]
        assert len(data["path_geometries"]) == len(data["path_energies_hartree"]) >= 3
        assert np.allclose(data["path_geometries"][0]["coords"], hcn_ts.geometry["coords"], atol=1e-6)
        assert data["path_energies_hartree"][0] == pytest.approx(hcn_ts.energy_hartree, abs=1e-6)
        assert data["end_energy_hartree"] == result.energy_hartree < hcn_ts.energy_hartree - 0.05
        h_c, h_n = h_distances(result.geometry)
        ends[direction] = "HCN" if h_c < h_n else "HNC"
        json.dumps(data)
    assert sorted(ends.values()) == ["HCN", "HNC"]
    again = tblite.run("irc", "GFN2-xTB", payload(hcn_ts.geometry, direction="forward"), {},
                       folder(tmp_path, "again"), 1)
    assert ends["forward"] == ("HCN" if np.subtract(*h_distances(again.geometry)) < 0 else "HNC")
    with pytest.raises(ValueError, match="'direction' must be one of forward, reverse"):
        tblite.run("irc", "GFN2-xTB", payload(hcn_ts.geometry, direction="backward"), {}, tmp_path, 1)


# ---------------------------------------------------------------- tblite: rotor scan, TS guesses


@pytest.mark.slow
def test_ethane_rotor_scan_is_threefold_and_matches_a_rigid_rotation(tblite, tmp_path):
    from ase.build import molecule
    from ase.optimize import BFGS
    from tblite.ase import TBLite

    ethane = molecule("C2H6")  # C0 C1, H2-H4 on C0, H5-H7 on C1
    xyz = xyz_dict_from_atoms(ethane.get_chemical_symbols(), ethane.get_positions())
    scan = tblite.run("rotor_scan_1d", "GFN2-xTB",
                      payload(xyz, torsion=[2, 0, 1, 5], resolution_deg=30, rotor_index=0), {}, tmp_path, 1)
    data = scan.data
    assert len(data["angles_deg"]) == len(data["energies_hartree"]) == len(data["geometries"]) == 12
    assert data["constrained_converged"] == [True] * 12 and data["torsion"] == [2, 0, 1, 5]
    assert data["resolution_deg"] == 30 and data["rotor_index"] == 0 and min(data["relative_energies_kj_mol"]) == 0
    assert np.diff(data["angles_deg"]) % 360 == pytest.approx([30] * 11)
    kcal = np.array(data["energies_hartree"]) * 627.5095
    assert max(kcal[[0, 4, 8]]) - min(kcal[[0, 4, 8]]) < 0.1  # 0, 120, 240 degrees
    barrier = kcal.max() - kcal.min()
    # independent reference: fully relaxed staggered ethane, rotated rigidly by 60 degrees
    ethane.calc = TBLite(method="GFN2-xTB", verbosity=0)
    BFGS(ethane, logfile=None).run(fmax=0.001)
    staggered = ethane.get_potential_energy()
    ethane.set_dihedral(2, 0, 1, 5, ethane.get_dihedral(2, 0, 1, 5) + 60, indices=[1, 5, 6, 7])
    rigid = (ethane.get_potential_energy() - staggered) * KCAL_PER_EV
    assert abs(barrier - rigid) < 0.5 and barrier <= rigid + 0.05  # relaxing can only lower it
    json.dumps(data)


def test_rotor_scan_failures_and_bad_payloads(tblite, tmp_path):
    from ase.build import molecule

    ethane = molecule("C2H6")
    xyz = xyz_dict_from_atoms(ethane.get_chemical_symbols(), ethane.get_positions())
    scan = payload(xyz, torsion=[2, 0, 1, 5], resolution_deg=120, rotor_index=0)
    exc = fails(tblite, "rotor_scan_1d", "GFN2-xTB", scan, {"max_steps": 1}, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "scan_point_not_converged")
    with pytest.raises(ValueError, match="resolution_deg 7 must divide 360"):
        tblite.run("rotor_scan_1d", "GFN2-xTB", {**scan, "resolution_deg": 7}, {}, tmp_path, 1)
    with pytest.raises(ValueError, match="unknown option.*'resolution_deg'"):  # the payload's, never an option
        tblite.run("rotor_scan_1d", "GFN2-xTB", scan, {"resolution_deg": 10}, tmp_path, 1)
    with pytest.raises(ValueError, match="must run i-j-k-l along bonds: atom 5 on atom 0's side"):
        tblite.run("rotor_scan_1d", "GFN2-xTB", {**scan, "torsion": [5, 0, 1, 2]}, {}, tmp_path, 1)


def test_ts_guesses_by_idpp_peak_in_the_middle(tblite, tmp_path):
    reactant = xyz_dict_from_text("H 0 0 0\nH 0.74 0 0\nH 3.0 0 0")  # H2 + H -> H + H2
    product = xyz_dict_from_text("H -1.5 0 0\nH 0.74 0 0\nH 1.48 0 0")
    task = {"reactant_xyz": reactant, "product_xyz": product, "charge": 0, "multiplicity": 2, "method": "idpp",
            "n_images": 9}
    result = tblite.run("ts_guess_batch_method", "GFN2-xTB", task, {}, tmp_path, 1)
    guesses = result.data["guesses"]
    assert [g["index"] for g in guesses] == list(range(1, 10))  # 0 is the reactant, 10 the product
    assert 3 <= result.data["highest_index"] <= 7
    best = max(guesses, key=lambda g: g["energy_hartree"])
    assert (result.energy_hartree, result.geometry) == (best["energy_hartree"], best["geometry"])
    assert best["energy_hartree"] > max(result.data["reactant_energy_hartree"], result.data["product_energy_hartree"])
    for guess in guesses:
        validate_xyz_dict(guess["geometry"])
    linear = tblite.run("ts_guess_batch_method", "GFN2-xTB", {**task, "method": "linear", "n_images": 3}, {},
                        tmp_path, 1)
    assert len(linear.data["guesses"]) == 3 and linear.data["highest_index"] == 2
    with pytest.raises(ValueError, match="same elements in the same order"):
        tblite.run("ts_guess_batch_method", "GFN2-xTB",
                   {**task, "product_xyz": xyz_dict_from_text("H 0 0 0\nH 0.74 0 0\nLi 3 0 0")}, {}, tmp_path, 1)
    json.dumps(result.data)


def test_geometric_leaves_the_workers_logging_alone(tblite, capfd, tmp_path):
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    tblite.run("ts_opt", "GFN2-xTB", payload(HCN_GUESS), {}, tmp_path, 1)
    assert (list(root.handlers), root.level) == before
    printed = capfd.readouterr()
    assert "geomeTRIC" not in printed.out + printed.err
    assert "geomeTRIC" in (tmp_path / "ts.log").read_text()


# ---------------------------------------------------------------- PySCF


@pytest.fixture(scope="module")
def pyscf_engine():
    return get_engine("pyscf")


def test_pyscf_hf_water_equals_a_direct_pyscf_call(pyscf_engine, tmp_path):
    from pyscf import gto, lib, scf

    threads = lib.num_threads()
    result = pyscf_engine.run("species_sp", "HF/STO-3G", payload(WATER), {}, tmp_path, 1)
    assert lib.num_threads() == threads  # cores applied for the run only
    mol = gto.M(atom=WATER.replace("\n", ";"), basis="sto-3g", verbose=0)
    direct = scf.RHF(mol)
    assert result.energy_hartree == pytest.approx(direct.kernel(), abs=1e-8) and direct.converged
    assert result.converged and (tmp_path / "pyscf.out").is_file()


def test_pyscf_unconverged_scf_is_ess(pyscf_engine, tmp_path):
    exc = fails(pyscf_engine, "species_sp", "hf/sto-3g", payload(WATER), {"max_cycle": 1}, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "scf_not_converged")
    assert "max_cycle" in exc.message


def test_pyscf_opt_and_analytic_frequencies(pyscf_engine, tmp_path):
    opt = pyscf_engine.run("conf_opt", "hf/sto-3g", payload(WATER), {}, folder(tmp_path, "opt"), 1)
    assert opt.converged and opt.energy_hartree < opt.data["initial_energy_hartree"] and opt.data["n_steps"] >= 2
    freq = pyscf_engine.run("species_freq", "hf/sto-3g", payload(opt.geometry), {}, folder(tmp_path, "freq"), 1)
    assert freq.data["n_imaginary"] == 0 and len(freq.data["frequencies_cm1"]) == 3
    assert freq.energy_hartree == pytest.approx(opt.energy_hartree, abs=1e-7)
    exc = fails(pyscf_engine, "conf_opt", "hf/sto-3g", payload(WATER), {"max_steps": 2}, folder(tmp_path, "short"))
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "max_opt_cycles")
    assert exc.last_geometry["symbols"] == opt.geometry["symbols"]  # where geomeTRIC stopped, for a restart
    assert opt.energy_hartree < exc.last_energy_hartree < opt.data["initial_energy_hartree"]
    with pytest.raises(ValueError, match="is not 'method/basis'"):
        pyscf_engine.run("species_sp", "hf", payload(WATER), {}, tmp_path, 1)
    exc = fails(pyscf_engine, "species_sp", "hf/sto-3g", payload("O 0 0 0\nH 0 0 0.97"), {}, tmp_path)
    assert exc.reason == "multiplicity_inconsistent"  # OH as a singlet


# ---------------------------------------------------------------- external programs (real logs)


@pytest.fixture(scope="module")
def external():
    return get_engine("external")


def replay(log: Path, **options) -> dict:
    """Options whose 'program' prints a real log (a stand-in for g16/orca, which this machine lacks)."""
    script = "import shutil, sys; shutil.copyfileobj(open(sys.argv[1]), sys.stdout)"
    return {"command": [sys.executable, "-c", script, str(log), "{input}"], "program": "replay",
            "input_template": "! {level}\n* xyz {charge} {multiplicity}\n{xyz}\n*\n", "output": "job.out",
            "stdout": "job.out", **options}


def test_missing_program_is_transient(external, tmp_path):
    options = {"command": ["no-such-g16-binary", "{input}"], "input_template": "{xyz}", "output": "input.log"}
    exc = fails(external, "species_sp", "b3lyp/6-31g*", payload(WATER), options, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.TRANSIENT, "engine_not_found")
    assert "no-such-g16-binary" in exc.message
    with pytest.raises(ValueError, match="not a shell string"):
        external.run("species_sp", "x", payload(WATER), {**options, "command": "g16 input.inp"}, tmp_path, 1)


@pytest.mark.parametrize("log, printed", [
    ("gaussian09_h2o_opt_freq.out", r"SCF Done:\s+E\(RB97D\)\s+=\s+(-?\d+\.\d+)"),
    ("gaussian16_methane_opt_freq.log", r"SCF Done:\s+E\(RB3LYP\)\s+=\s+(-?\d+\.\d+)"),
    ("orca421_water_sp.out", r"FINAL SINGLE POINT ENERGY\s+(-?\d+\.\d+)"),
])
def test_real_logs_give_hartree_energies(external, tmp_path, log, printed):
    import cclib

    path = DATA / log
    family = "conf_sp" if "orca" in log else "conf_opt"
    result = external.run(family, "b3lyp/6-31g", payload(WATER), replay(path), tmp_path, 1)
    parsed = cclib.io.ccread(str(path))
    assert result.energy_hartree == pytest.approx(parsed.scfenergies[-1] / 27.21138505, abs=1e-10)  # cclib's factor
    assert result.energy_hartree == pytest.approx(parsed.scfenergies[-1] / 27.211386245988, abs=1e-5)  # CODATA 2018
    last_printed = float(re.findall(printed, path.read_text())[-1])
    assert result.energy_hartree == pytest.approx(last_printed, abs=1e-7)
    assert "* xyz 0 1" in (tmp_path / "input.inp").read_text() and "job.out" in result.native_outputs
    if family == "conf_opt":
        assert np.allclose(result.geometry["coords"], parsed.atomcoords[-1], atol=1e-9)
        assert result.data["n_steps"] >= 1
    else:
        assert result.geometry == payload(WATER)["xyz"]


def test_real_gaussian_frequencies_and_classifications(external, tmp_path):
    log = DATA / "gaussian09_h2o_opt_freq.out"
    freq = external.run("species_freq", "x", payload(WATER), replay(log), folder(tmp_path, "freq"), 1)
    assert freq.data["frequencies_cm1"] == pytest.approx([1694.8284, 3644.5363, 3778.6962])
    assert freq.data["n_imaginary"] == 0
    exc = fails(external, "ts_opt", "x", payload(WATER), replay(log), folder(tmp_path, "ts"))
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "wrong_imaginary_count") and "found 0" in exc.message
    orca = replay(DATA / "orca421_water_sp.out")
    exc = fails(external, "conf_opt", "x", payload(WATER), orca, folder(tmp_path, "sp"))
    assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "opt_not_converged")
    silent = {**replay(log), "command": [sys.executable, "-c", "import sys; sys.exit(3)"]}
    exc = fails(external, "conf_sp", "x", payload(WATER), silent, folder(tmp_path, "silent"))
    assert (exc.failure_class, exc.reason) == (FailureClass.TRANSIENT, "no_output")


def test_external_timeout_kills_the_program(external, tmp_path):
    options = {**replay(DATA / "orca421_water_sp.out"), "timeout_s": 0.5,
               "command": [sys.executable, "-c", "import time; time.sleep(60)"]}
    exc = fails(external, "conf_sp", "x", payload(WATER), options, tmp_path)
    assert (exc.failure_class, exc.reason) == (FailureClass.TRANSIENT, "timeout")


def test_new_engines_are_registered():
    assert {"pyscf", "external"} <= set(known_engines())
    assert get_engine("tblite").families >= {"species_freq", "ts_opt", "irc", "rotor_scan_1d",
                                             "ts_guess_batch_method"}


ORCA6 = {  # real ORCA 6 logs (tests/data/external/README.md) that cclib 1.8.1 fails on
    "orca601_water_mp2_sp.out": ("species_sp", -74.96357424008319),  # SCF energy, not the MP2 total
    "orca601_dvb_freq.out": ("species_freq", -382.05510710761649),
    "orca610_diels_alder_optts_freq.out": ("ts_opt", -613.87553768983275),
}


@pytest.mark.parametrize("log", sorted(ORCA6))
def test_orca6_logs_cclib_cannot_parse_are_read(external, tmp_path, log):
    from cclib.io import ccopen

    path = DATA / log
    text = path.read_text()
    with pytest.raises(Exception):  # noqa: B017 - the reason for the fallback: cclib 1.8.1 fails on ORCA 6
        ccopen(str(path), loglevel=50).parse()
    family, scf = ORCA6[log]
    result = external.run(family, "x", payload(WATER), replay(path), tmp_path, 1)
    assert result.data["parser"] == "pipe_rules.engines.orca_output"
    assert result.data["package_version"] == re.search(r"Program Version (\S+)", text).group(1)
    assert result.energy_hartree == pytest.approx(scf, abs=1e-9)
    printed = [float(v) for v in re.findall(r"Total Energy\s+:\s+(-?\d+\.\d+) Eh", text)]
    assert result.energy_hartree == printed[-1]
    if family == "species_freq":
        assert result.data["n_imaginary"] == 0 and len(result.data["frequencies_cm1"]) == 3 * 20 - 6
        assert result.data["frequencies_cm1"][:3] == [43.87, 77.06, 150.56]
    if family == "ts_opt":
        assert result.data["n_imaginary"] == 1 and result.data["imaginary_frequency_cm1"] == -553.29
        block = text.rsplit("CARTESIAN COORDINATES (ANGSTROEM)", 1)[1].split("\n\n")[0].splitlines()[2:]
        assert result.geometry["symbols"] == [line.split()[0] for line in block]
        assert result.geometry["coords"] == [[float(v) for v in line.split()[1:]] for line in block]
        exc = fails(external, "conf_opt", "x", payload(WATER), replay(DATA / "orca601_dvb_freq.out"),
                    folder(tmp_path, "opt"))
        assert (exc.failure_class, exc.reason) == (FailureClass.ESS, "opt_not_converged")
