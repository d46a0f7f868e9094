"""Staging: deduplication by content, idempotence, shard dealing, cancellation."""

from __future__ import annotations

import json

from conftest import h2_species, pipe_rules_cli, write_config

from pipe_rules.execution.worker import run_worker
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.reporting.ingest import ingest
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids, read_manifest
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import RunState
from pipe_rules.store.taskstate import read_state
from pipe_rules.store.records_io import load_records


def test_identical_inputs_are_computed_once_and_shared(tmp_path):
    species = h2_species(2) + [{"label": "h2_copy", "xyz": h2_species(1)[0]["xyz"]}]
    campaign = load_campaign(write_config(tmp_path, species=species))
    report = stage_run(campaign, "main")
    assert (report.new_tasks, report.duplicates) == (2, 1)
    layout = RunLayout(campaign.run_dir("main"))
    assert read_manifest(layout)["aliases"] == {
        "h2_copy_species_sp": {"of": "h2_0_species_sp", "owner_key": "h2_copy", "ingestion_metadata": {}}}
    run_worker(layout.root, install_signals=False)
    ingest(layout)
    records = load_records(layout)
    assert set(records["owners"]) == {"h2_0", "h2_1", "h2_copy"}
    assert records["owners"]["h2_copy"]["sp_task_id"] == "h2_copy_species_sp"


def test_tasks_are_dealt_round_robin_over_shards(staged_run):
    layout = staged_run(7, shards=3)
    shards = [entry[1] for entry in read_manifest(layout)["tasks"]]
    assert shards == ["shard-000", "shard-001", "shard-002"] * 2 + ["shard-000"]
    assert sorted(p.name for p in layout.pending_dir.iterdir()) == ["shard-000", "shard-001", "shard-002"]
    assert len([p for p in layout.pending_shard_dir("shard-000").rglob("*") if p.is_file()]) == 3


def test_new_species_are_added_to_a_staged_run_without_touching_the_old(tmp_path):
    config = write_config(tmp_path, 2)
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    layout = RunLayout(campaign.run_dir("main"))
    run_worker(layout.root, install_signals=False)
    old = {t: layout.state(t).read_bytes() for t in manifest_task_ids(layout)}
    config = write_config(tmp_path, 3)
    report = stage_run(load_campaign(config), "main")
    assert (report.new_tasks, report.existing_tasks) == (1, 2)
    assert old == {t: layout.state(t).read_bytes() for t in old}
    assert read_run(layout).state is RunState.STAGED


def test_cancel_stops_pending_work_and_keeps_results(staged_run):
    layout = staged_run(4)
    run_worker(layout.root, max_tasks=1, install_signals=False)
    out = pipe_rules_cli("cancel", str(layout.root), check=True).stdout
    assert "cancelled 3 task(s)" in out
    statuses = sorted(read_state(layout, t).status.value for t in manifest_task_ids(layout))
    assert statuses == ["CANCELLED"] * 3 + ["COMPLETED"]
    status = json.loads(pipe_rules_cli("status", str(layout.root), "--json", check=True).stdout)
    assert status["run_state"] == "CANCELLED"
    assert run_worker(layout.root, install_signals=False).completed == 0
    assert [p for p in layout.pending_dir.rglob("*") if p.is_file()] == []


def test_cancelling_a_run_that_already_ended_keeps_its_state_and_results(staged_run):
    """A host may cancel just as the last task finishes: the run stays COMPLETED, nothing changes."""
    layout = staged_run(2)
    assert run_worker(layout.root, install_signals=False).completed == 2
    ingest(layout)
    assert read_run(layout).state is RunState.COMPLETED
    results = {p: p.read_bytes() for p in layout.root.rglob("result.json")}
    proc = pipe_rules_cli("cancel", str(layout.root), check=True)
    assert proc.stdout.strip() == "run already COMPLETED: nothing to cancel"
    assert read_run(layout).state is RunState.COMPLETED
    assert {p: p.read_bytes() for p in layout.root.rglob("result.json")} == results and len(results) == 2
