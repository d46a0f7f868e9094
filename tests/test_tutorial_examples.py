"""The README tutorial: one campaign per family in examples/tutorial/. Every file validates and
stages the tasks the README promises, the README shows each file byte for byte (docs cannot rot),
and the smallest one runs end to end exactly as the README says (`pipe-rules run FILE`)."""

from __future__ import annotations

import pytest
from conftest import REPO, pipe_rules_cli, tblite_energy

from pipe_rules.cli.schema_files import load as schema
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.records_io import load_records
from pipe_rules.store.runrecord import run_exists

TUTORIAL = REPO / "examples" / "tutorial"
FILES = sorted(TUTORIAL.glob("*.yaml"))
FAMILIES = schema("config")["$defs"]["RunConfig"]["properties"]["family"]["enum"]
# family -> the task ids staging must produce (conformer runs: RDKit drops duplicate conformers)
EXPECTED_TASKS = {
    "species_sp": {"water_species_sp", "ammonia_species_sp"},
    "species_freq": {"water_species_freq"},
    "rotor_scan_1d": {"ethane_scan_r0"},
    "ts_opt": {"hcn_ts_ts_opt_0"},
    "irc": {"hcn_ts_irc_forward", "hcn_ts_irc_reverse"},
    "ts_guess_batch_method": {"h_exchange_tsg_idpp", "h_exchange_tsg_linear"},
}


def test_one_tutorial_campaign_per_family():
    assert sorted(path.stem for path in FILES) == sorted(FAMILIES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_tutorial_config_validates_and_stages(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_root is relative: runs/ lands here, as with `pipe-rules run`
    campaign = load_campaign(path)
    [run] = campaign.runs
    assert (run.name, run.family, run.from_run) == (path.stem, path.stem, None)
    report = stage_run(campaign, run.name)
    assert report.skipped == () and report.duplicates == 0
    task_ids = set(manifest_task_ids(RunLayout(campaign.run_dir(run.name))))
    if run.family in EXPECTED_TASKS:
        assert task_ids == EXPECTED_TASKS[run.family]
    else:  # conformers of each species, at least one each
        owners = {task_id.rsplit(f"_{run.family}_", 1)[0] for task_id in task_ids}
        assert owners == {s.label for s in campaign.species} and len(task_ids) >= 2
    assert report.new_tasks == len(task_ids)
    assert run_exists(RunLayout(tmp_path / "runs" / "tutorial" / run.name))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_readme_shows_the_tutorial_file_byte_for_byte(path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    assert f"```yaml\n{text}```\n" in readme, (
        f"README's snippet of {path.relative_to(REPO)} differs from the file: paste the file into the README")
    assert f"pipe-rules run {path.relative_to(REPO)}\n" in readme


@pytest.mark.slow
def test_smallest_tutorial_runs_end_to_end_through_the_local_profile(tmp_path):
    path = TUTORIAL / "species_sp.yaml"
    proc = pipe_rules_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = load_records(RunLayout(tmp_path / "runs" / "tutorial" / "species_sp"))
    assert records["run_state"] == "COMPLETED" and records["failed"] == []
    water = records["owners"]["water"]
    direct = tblite_energy({"symbols": ["O", "H", "H"], "coords": [[0, 0, 0.117], [0, 0.757, -0.469],
                                                                   [0, -0.757, -0.469]]}, "GFN1-xTB")
    assert water["e_elect_hartree"] == pytest.approx(direct, abs=1e-8)
    assert water["e_elect"] == pytest.approx(direct * 2625.499639479, rel=1e-9)  # kJ/mol, as ARC
    assert set(records["owners"]) == {"water", "ammonia"}
    assert "campaign tutorial: snakemake exited 0" in proc.stdout
