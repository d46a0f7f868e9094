"""Every task family end to end through `snakemake --profile profiles/local` on tblite: staging
from species, reactions and earlier runs' records, the workers, and the fields ingestion sets.

One campaign (module fixture): conformers -> freq and scan; a TS species with a crude HCN <-> HNC
guess -> ts_opt -> irc (from_run); a reaction -> interpolated TS guesses. A species whose
multiplicity contradicts its electrons fails in ONE task of the conformer run (FAILED_ESS) while
the others complete. Config errors for families without any possible input are checked without
Snakemake.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAMILY_SPECIES as SPECIES
from conftest import HCN_GUESS, WATER, family_config, snakemake

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.records_io import load_records

RUNS = [
    {"name": "conformers", "family": "conf_opt", "n_conformers": 1, "species": ["water", "ethane", "bad_water"]},
    {"name": "freq", "family": "species_freq", "from_run": "conformers"},
    {"name": "scan", "family": "rotor_scan_1d", "from_run": "conformers", "scan_resolution_deg": 30},
    {"name": "ts", "family": "ts_opt", "species": ["hcn_ts"]},
    {"name": "irc", "family": "irc", "from_run": "ts"},
    {"name": "ts_freq", "family": "species_freq", "from_run": "ts"},
    {"name": "tsg", "family": "ts_guess_batch_method", "ts_methods": ["idpp", "linear"], "n_images": 5},
]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families")
    family_config(folder, runs=RUNS, lease_s=60, heartbeat_s=5, linger_s=1)
    proc = snakemake(folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def records(folder, run):
    return load_records(RunLayout(folder / "runs" / "test" / run))


def h_distances(xyz):
    c, n, h = np.asarray(xyz["coords"])
    return float(np.linalg.norm(h - c)), float(np.linalg.norm(h - n))


@pytest.mark.slow
def test_one_engine_error_fails_one_task_and_the_others_complete(campaign):
    rec = records(campaign, "conformers")
    assert rec["run_state"] == "COMPLETED_PARTIAL" and rec["task_counts"] == {"COMPLETED": 2, "FAILED_ESS": 1}
    [failed] = rec["failed"]
    assert (failed["task_id"], failed["status"], failed["failure_reason"]) == \
        ("bad_water_conf_opt_0", "FAILED_ESS", "multiplicity_inconsistent")
    assert "not 2" in failed["engine_message"] and "10 electrons" in failed["engine_message"]
    assert all(rec["owners"][label]["conformers"][0]["converged"] for label in ("water", "ethane"))


@pytest.mark.slow
def test_water_frequencies_have_no_imaginary_mode(campaign):
    rec = records(campaign, "freq")
    assert set(rec["owners"]) == {"water", "ethane"}  # bad_water has no conformer: skipped at staging
    water = rec["owners"]["water"]
    assert water["n_imaginary"] == 0 and water["imaginary_flag"] is False
    assert len(water["freqs"]) == 3 and min(water["freqs"]) > 1400 and 0.015 < water["zpe_hartree"] < 0.025


@pytest.mark.slow
def test_ethane_scan_is_threefold_at_the_run_resolution(campaign):
    rec = records(campaign, "scan")
    assert set(rec["owners"]) == {"ethane"}
    rotor = rec["owners"]["ethane"]["rotors"]["0"]
    assert rotor["torsion"] == [2, 0, 1, 5] and rotor["resolution_deg"] == 30 and rotor["success"] is True
    assert len(rotor["angles_deg"]) == len(rotor["energies_hartree"]) == 12
    relative = np.array(rotor["relative_energies_kj_mol"])
    assert np.ptp(relative) > 5  # a real barrier (about 11 kJ/mol)...
    assert np.allclose(relative[:4], relative[4:8], atol=0.3) and np.allclose(relative[:4], relative[8:], atol=0.3)
    log = (campaign / "runs/test/scan/logs/stage_run/scan.log").read_text()  # logs/<rule>/<wildcards>.log
    assert "water: has no torsions" in log and "bad_water: no converged conformer" in log


@pytest.mark.slow
def test_hcn_ts_has_exactly_one_imaginary_mode(campaign):
    owner = records(campaign, "ts")["owners"]["hcn_ts"]
    assert owner["owner_type"] == "species" and owner["chosen_ts_guess_index"] == 0
    guess = owner["ts_guesses"]["0"]
    assert guess["imaginary_frequency_cm1"] < -500 and guess["n_imaginary"] == 1
    h_c, h_n = h_distances(guess["geometry"])
    assert abs(h_c - h_n) < 0.5  # H still bridges C and N


@pytest.mark.slow
def test_frequencies_of_the_chosen_ts_are_flagged_not_dropped(campaign):
    ts = records(campaign, "ts")["owners"]["hcn_ts"]["ts_guesses"]["0"]
    owner = records(campaign, "ts_freq")["owners"]["hcn_ts"]
    assert owner["imaginary_flag"] is True and owner["n_imaginary"] == 1
    assert min(owner["freqs"]) == pytest.approx(ts["imaginary_frequency_cm1"], abs=1.0)


@pytest.mark.slow
def test_irc_ends_are_hcn_and_hnc(campaign):
    ts_energy = records(campaign, "ts")["owners"]["hcn_ts"]["ts_guesses"]["0"]["energy_hartree"]
    rec = records(campaign, "irc")
    assert rec["run_state"] == "COMPLETED", rec["failed"]
    halves = rec["owners"]["hcn_ts"]["irc"]
    ends = set()
    for direction in ("forward", "reverse"):
        half = halves[direction]
        assert half["path_energies_hartree"][0] == pytest.approx(ts_energy, abs=1e-5)
        assert half["end_energy_hartree"] < ts_energy - 0.05
        h_c, h_n = h_distances(half["end_geometry"])
        ends.add("HCN" if h_c < h_n else "HNC")
    assert ends == {"HCN", "HNC"}


@pytest.mark.slow
def test_ts_guesses_of_a_reaction_sorted_by_energy(campaign):
    rec = records(campaign, "tsg")
    owner = rec["owners"]["h_exchange"]
    assert owner["owner_type"] == "reaction"
    guesses = owner["tsg_guesses"]
    assert len(guesses) == 10 and {g["method"] for g in guesses} == {"idpp", "linear"}
    energies = [g["energy_hartree"] for g in guesses]
    assert energies == sorted(energies) and {g["index"] for g in guesses} == set(range(1, 6))


@pytest.mark.parametrize("species, runs, reactions, field", [
    (SPECIES[:1], [{"name": "s", "family": "rotor_scan_1d"}], None, "runs.0.family"),
    (SPECIES[:1], [{"name": "t", "family": "ts_opt"}], None, "runs.0.family"),
    (SPECIES[:1], [{"name": "c", "family": "conf_opt"}, {"name": "i", "family": "irc", "from_run": "c"}], None,
     "runs.1.from_run"),
    (SPECIES[:1], [{"name": "g", "family": "ts_guess_batch_method"}], None, "runs.0.family"),
    (SPECIES[:2], [{"name": "s", "family": "rotor_scan_1d", "scan_resolution_deg": 7}], None,
     "runs.0.scan_resolution_deg"),
    ([{"label": "x", "xyz": WATER, "torsions": [[0, 1, 1, 2]]}], [{"name": "s", "family": "rotor_scan_1d"}], None,
     "species.0.torsions.0"),
])
def test_a_family_without_any_input_is_a_config_error(tmp_path, species, runs, reactions, field):
    with pytest.raises(ConfigError) as caught:
        load_campaign(family_config(tmp_path, species=species, runs=runs, reactions=reactions))
    assert caught.value.field == field, str(caught.value)


def test_a_torsion_outside_the_geometry_names_the_field(tmp_path):
    species = [{"label": "w", "xyz": WATER, "torsions": [[0, 1, 2, 3]]}]
    campaign = load_campaign(family_config(tmp_path, species=species, runs=[{"name": "s", "family": "rotor_scan_1d"}]))
    with pytest.raises(ConfigError, match="geometry has 3 atoms") as caught:
        stage_run(campaign, "s")
    assert caught.value.field == "species.0.torsions.0"


@pytest.mark.parametrize("species, message", [
    ({"label": "a", "smiles": "C", "inchi": "InChI=1S/CH4/h1H4"}, "give at most one of: smiles, inchi, adjlist"),
    ({"label": "a"}, "needs one of: smiles, inchi, adjlist, xyz, conformers, ts_guesses"),
    ({"label": "a", "ts_guesses": [HCN_GUESS], "irc_directions": ["backward"]}, "'backward' is not one of"),
])
def test_species_fields_are_checked_by_name(tmp_path, species, message):
    with pytest.raises(ConfigError, match=message):
        load_campaign(family_config(tmp_path, species=[species], runs=[{"name": "t", "family": "ts_opt"}]))


RUN_OF_FAMILY = {"conf_opt": "conformers", "species_freq": "freq", "rotor_scan_1d": "scan", "ts_opt": "ts",
                 "irc": "irc", "ts_guess_batch_method": "tsg", "every family": "conformers"}


def _names_in(document, found=None) -> set[str]:
    """Every key and every string value anywhere in a records document."""
    found = set() if found is None else found
    if isinstance(document, dict):
        for key, value in document.items():
            found.add(str(key))
            _names_in(value, found)
    elif isinstance(document, list):
        for value in document:
            _names_in(value, found)
    elif isinstance(document, str):
        found.add(document)
    return found


@pytest.mark.slow
def test_every_field_of_the_readme_ingestion_contract_is_in_the_records(campaign):
    """The README table is what hosts code against: each field it names must exist in real records."""
    import re

    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    table = readme.split("## Results for ARC (the ingestion contract)")[1].split("\n\n")[2]
    checked = 0
    for row in table.splitlines()[2:]:
        family_cell, fields_cell, _ = (cell.strip() for cell in row.strip().strip("|").split(" | "))
        run = next((RUN_OF_FAMILY[f] for f in family_cell.split(", ") if f in RUN_OF_FAMILY), None)
        if run is None:  # species_sp / conf_sp only: covered by test_campaign_e2e
            continue
        names = _names_in(records(campaign, run))
        for token in re.findall(r"`([^`]+)`", fields_cell):
            if token.endswith((".json", ".jsonl")):
                continue  # the file the fields are in, not a field
            for part in re.sub(r"\[[^\]]*\]", "", token).split("."):
                if part in ("None", "CANCELLED", "FAILED_TERMINAL", "max_opt_cycles", "scf_not_converged"):
                    continue  # values the campaign does not produce, named as examples
                assert part in names, f"README names `{token}` for {family_cell}, not in {run} records"
                checked += 1
    assert checked > 40
