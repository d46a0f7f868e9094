"""A real campaign through `snakemake --profile profiles/local`: RDKit conformers, GFN2-xTB
optimisations, GFN1-xTB single points; energies checked against tblite called directly here."""

from __future__ import annotations

import json

import pytest
from conftest import pipe_rules_cli, snakemake, tblite_energy, write_config

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state
from pipe_rules.store.records_io import load_records

pytestmark = pytest.mark.slow  # a whole Snakemake campaign (or the benchmark): `make check` skips it

SPECIES = [{"label": "ethanol", "smiles": "CCO"}, {"label": "butane", "smiles": "CCCC"},
           {"label": "water", "xyz": "O 0 0 0.1173\nH 0 0.7572 -0.4692\nH 0 -0.7572 -0.4692"}]
RUNS = [{"name": "conformers", "family": "conf_opt", "n_conformers": 6, "options": {"fmax": 0.01}},
        {"name": "energies", "family": "species_sp", "from_run": "conformers", "level": "GFN1-xTB"}]
@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("campaign")
    write_config(folder, engine="tblite", species=SPECIES, runs=RUNS, lease_s=60, heartbeat_s=5)
    proc = snakemake(folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def test_every_task_completed_once_and_results_are_valid(campaign):
    for run in ("conformers", "energies"):
        layout = RunLayout(campaign / "runs" / "test" / run)
        for task_id in manifest_task_ids(layout):
            state = read_state(layout, task_id)
            assert state.status is TaskState.COMPLETED, (task_id, state.failure_reason)
            result = read_result(layout.result(task_id, state.attempt_index))
            assert result["engine"] == "tblite" and result["versions"]["tblite"]
            assert result["worker"]["pid"] > 0 and result["timings"]["wall_s"] >= 0


def test_each_job_logs_under_its_rule_name(campaign):
    """logs/<rule>/<wildcards>.log, as the Snakemake workflow template lays them out."""
    for run in ("conformers", "energies"):
        logs = campaign / "runs" / "test" / run / "logs"
        assert "new task(s)" in (logs / "stage_run" / f"{run}.log").read_text()
        worker_lines = [(logs / "run_shard" / f"shard-00{i}.log").read_text() for i in (0, 1)]
        assert all("completed" in text for text in worker_lines)
        assert (logs / "ingest_run" / f"{run}.log").is_file()
        assert sorted(p.name for p in logs.iterdir()) == ["ingest_run", "run_shard", "stage_run"]


def test_optimised_energies_match_tblite_called_directly(campaign):
    records = load_records(RunLayout(campaign / "runs/test/conformers"))
    assert records["run_state"] == "COMPLETED"
    assert set(records["owners"]) == {"ethanol", "butane", "water"}
    for owner in records["owners"].values():
        for conf in owner["conformers"]:
            assert conf["energy_hartree"] == pytest.approx(tblite_energy(conf["geometry"], "GFN2-xTB"), abs=1e-7)
    water = records["owners"]["water"]["conformers"][0]["energy_hartree"]
    assert water == pytest.approx(-5.0705, abs=2e-3)  # GFN2-xTB water at its minimum


def test_single_points_use_the_lowest_conformer_at_the_run_level(campaign):
    conformers = load_records(RunLayout(campaign / "runs/test/conformers"))["owners"]
    energies = load_records(RunLayout(campaign / "runs/test/energies"))["owners"]
    for label, owner in energies.items():
        best = conformers[label]["most_stable_xyz"]
        assert owner["e_elect_hartree"] == pytest.approx(tblite_energy(best, "GFN1-xTB"), abs=1e-7)
        assert owner["e_elect"] == pytest.approx(owner["e_elect_hartree"] * 2625.499639, rel=1e-9)


def test_results_survive_a_forced_rerun_of_a_shard(campaign):
    layout = RunLayout(campaign / "runs" / "test" / "conformers")
    before = {t: layout.result(t, 0).read_bytes() for t in manifest_task_ids(layout)}
    proc = snakemake(campaign, "--forcerun", "run_shard")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task_id, content in before.items():
        assert layout.result(task_id, 0).read_bytes() == content
        assert [h["to"] for h in read_state(layout, task_id).history].count("COMPLETED") == 1
    shard = json.loads((layout.shards_dir / "shard-000.json").read_text())
    assert (shard["completed"], shard["failed"]) == (0, 0)  # the re-run worker found nothing to do


def test_status_and_results_commands(campaign):
    run_dir = str(campaign / "runs" / "test" / "conformers")
    status = json.loads(pipe_rules_cli("status", run_dir, "--json", check=True).stdout)
    assert status["run_state"] == "COMPLETED"
    assert status["tasks"]["COMPLETED"] == sum(status["tasks"].values()) >= 4
    table = pipe_rules_cli("results", run_dir, check=True).stdout
    assert "butane" in table and "ethanol" in table


def test_restaging_is_idempotent(campaign):
    config = str(campaign / "config.yaml")
    layout = RunLayout(campaign / "runs" / "test" / "conformers")
    states = {t: layout.state(t).read_bytes() for t in manifest_task_ids(layout)}
    out = pipe_rules_cli("stage", config, check=True).stdout
    assert "0 new task(s)" in out
    assert states == {t: layout.state(t).read_bytes() for t in manifest_task_ids(layout)}
