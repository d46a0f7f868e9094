"""`pipe-rules run` fails with the line `pipe-rules stage` gives: the campaign is checked before
Snakemake starts, and what a rule could only find out inside Snakemake is shown from its log."""

from __future__ import annotations

import json

import pytest
from conftest import h2_species, pipe_rules_cli, write_config


@pytest.mark.slow
def test_bad_tasks_file_is_refused_before_snakemake(tmp_path):
    (tmp_path / "tasks.json").write_text('[{"task_id": "x"}]')
    config = write_config(tmp_path, runs=[{"name": "r", "family": "species_sp", "tasks_file": "tasks.json"}])
    staged = pipe_rules_cli("stage", str(config), cwd=tmp_path)
    run = pipe_rules_cli("run", str(config), cwd=tmp_path)
    assert staged.returncode == run.returncode == 2
    assert run.stderr == staged.stderr and staged.stderr.count("\n") == 1
    assert staged.stderr.startswith(f"pipe-rules: error: {tmp_path / 'tasks.json'}: field '0.")
    assert "snakemake" not in run.stdout and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_failing_rule_line_is_shown_and_exit_2(tmp_path):
    """Run b stages from run a's records; those records are damaged after a finished: only b's
    staging rule, inside Snakemake, can see it. Its one line is printed, and the exit code is 2."""
    config = write_config(tmp_path, species=h2_species(2), runs=[{"name": "a", "family": "conf_sp"},
                                                                 {"name": "b", "family": "species_sp", "from_run": "a"}])
    first = pipe_rules_cli("run", str(config), "--progress-every", "0", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    records = tmp_path / "runs" / "test" / "a" / "results" / "summary.json"  # b's staging reads a's results
    json.loads(records.read_text())
    records.write_text("{")
    second = pipe_rules_cli("run", str(config), "--progress-every", "0", cwd=tmp_path)
    assert second.returncode == 2, second.stdout + second.stderr
    line = second.stderr.splitlines()[-1]
    assert line.startswith(f"pipe-rules: error: {records}: ") and "results of run 'a'" in line
    log = (tmp_path / "runs" / "test" / "b" / "logs" / "stage_run" / "b.log").read_text()  # logs/<rule>/<run>.log
    assert line in log.splitlines()


@pytest.mark.slow
def test_a_resumed_campaign_skips_the_input_check_and_an_edited_one_is_checked_again(tmp_path, monkeypatch):
    """After a run staged from this very config, `pipe-rules run` does not parse its structures again
    (20,000 SMILES took ~17 s under load); an edit makes the run stale and the check finds a bad SMILES."""
    from pipe_rules.host.workflow_support import staged_as_configured
    from pipe_rules.inputs import chem
    from pipe_rules.inputs.config import load_campaign
    from pipe_rules.inputs.campaign_checks import check_campaign

    species = [{"label": "ethanol", "smiles": "CCO"}, {"label": "methane", "smiles": "C"}]
    config = write_config(tmp_path, species=species, runs=[{"name": "a", "family": "species_sp"}])
    first = pipe_rules_cli("run", str(config), "--progress-every", "0", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    campaign = load_campaign(config)
    assert staged_as_configured(campaign, campaign.run("a"))
    parsed = []
    real = chem.mol_from_smiles
    monkeypatch.setattr(chem, "mol_from_smiles", lambda smiles: parsed.append(smiles) or real(smiles))
    check_campaign(campaign, ["a"])
    assert parsed == []
    check_campaign(campaign)
    assert parsed == ["CCO", "C"]

    species[1]["smiles"] = "C1CC"  # an unclosed ring
    config = write_config(tmp_path, species=species, runs=[{"name": "a", "family": "species_sp"}])
    assert not staged_as_configured(load_campaign(config), load_campaign(config).run("a"))
    second = pipe_rules_cli("run", str(config), "--progress-every", "0", cwd=tmp_path)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert second.stderr.startswith(f"pipe-rules: error: {config}: field 'species.1.smiles': species 'methane'")
    assert "snakemake" not in second.stdout
