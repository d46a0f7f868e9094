"""Big inputs and results as streams (issue 13): a JSON Lines tasks file, the manifest, records.jsonl
+ failed.jsonl + summary.json with their schema, one-line errors for bad files, and runs written by
schema 1 (manifest.json, records.json) still working or saying how to migrate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
import yaml
from conftest import pipe_rules_cli, write_config

from pipe_rules import api
from pipe_rules.contracts.records import FailedTask, OwnerRecord, Summary
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.execution.worker import run_worker
from pipe_rules.host.run_results import run_results
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.reporting.ingest import ingest
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import iter_entries, manifest_task_ids
from pipe_rules.store.records_io import iter_owner_records, load_records
from pipe_rules.store.runrecord import RUN_SCHEMA_VERSION, read_run


def _spec(owner: int, conformer: int) -> dict:
    payload = {"xyz": {"symbols": ["H", "H"], "isotopes": [1, 1], "coords": [[0, 0, 0], [0, 0, 0.7 + owner * 1e-3 +
                                                                                        conformer * 1e-5]]},
               "charge": 0, "multiplicity": 1}
    return TaskSpec.create(task_id=f"s{owner}_conf_opt_{conformer}", family="conf_opt", owner_type="species",
                           owner_key=f"s{owner}", engine="noop", level="GFN2-xTB", cores=1, memory_mb=2000,
                           walltime_min=60, input_payload=payload, ingestion_metadata={"conformer_index": conformer},
                           options={}).as_dict()


def _tasks_campaign(folder, lines: list[str]) -> RunLayout:
    (folder / "tasks.jsonl").write_text("".join(lines))
    config = {"campaign": "test", "run_root": str(folder / "runs"),
              "defaults": {"engine": "noop", "level": "GFN2-xTB", "shards": 2, "linger_s": 0},
              "runs": [{"name": "main", "family": "conf_opt", "tasks_file": "tasks.jsonl"}]}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return RunLayout(folder / "runs" / "test" / "main")


def test_a_json_lines_tasks_file_is_staged_drained_and_ingested_per_owner(tmp_path, monkeypatch):
    """Owners of several conformers arrive as one spec per line; staging reads them in batches (a batch
    of 7 here), and the records come out one line per owner, sorted, with every conformer in it."""
    import pipe_rules.inputs.staging as staging

    monkeypatch.setattr(staging, "CHUNK", 7)
    specs = [_spec(owner, conformer) for owner in (3, 1, 2) for conformer in range(5)]
    layout = _tasks_campaign(tmp_path, [json.dumps(s) + "\n" for s in specs])
    report = stage_run(load_campaign(tmp_path / "config.yaml"), "main")
    assert (report.new_tasks, report.duplicates) == (15, 0)
    assert manifest_task_ids(layout) == [s["task_id"] for s in specs]  # staging order, each once
    assert read_run(layout).n_tasks == 15 and read_run(layout).schema_version == RUN_SCHEMA_VERSION
    run_worker(layout.root, install_signals=False, linger=False)
    summary = ingest(layout)
    assert summary["task_counts"] == {"COMPLETED": 15} and summary["n_owners"] == 3 and summary["n_failed"] == 0
    owners = list(iter_owner_records(layout))
    assert [o["owner_key"] for o in owners] == ["s1", "s2", "s3"]
    assert all([c["conformer_index"] for c in o["conformers"]] == [0, 1, 2, 3, 4] for o in owners)
    for line in layout.records.read_text().splitlines():  # the schema readers check
        OwnerRecord.model_validate_json(line)
    Summary.model_validate_json(layout.summary.read_text())
    again = stage_run(load_campaign(tmp_path / "config.yaml"), "main")
    assert (again.new_tasks, again.existing_tasks) == (0, 15)
    assert len(list(iter_entries(layout))) == 15


@pytest.mark.slow
def test_a_bad_line_of_a_tasks_file_is_one_line_naming_file_and_line_and_nothing_is_staged(tmp_path):
    good = json.dumps(_spec(0, 0)) + "\n"
    bad = dict(_spec(0, 1), cores=0)
    layout = _tasks_campaign(tmp_path, [good, "\n", json.dumps(bad) + "\n"])
    proc = pipe_rules_cli("stage", str(tmp_path / "config.yaml"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"pipe-rules: error: {tmp_path / 'tasks.jsonl'}: field 'line 3.cores'"), lines[0]
    assert not layout.root.exists()  # checked before the first write
    (tmp_path / "tasks.jsonl").write_text(good + "{not json\n")
    proc = pipe_rules_cli("stage", str(tmp_path / "config.yaml"))
    assert proc.returncode == 2 and "field 'line 2': invalid JSON" in proc.stderr, proc.stderr


def test_failed_tasks_are_lines_of_failed_jsonl_and_the_schema_holds(staged_run):
    layout = staged_run(4, options={"fail": "ess"})
    run_worker(layout.root, install_signals=False, linger=False)
    summary = ingest(layout)
    assert summary["task_counts"] == {"FAILED_ESS": 4} and summary["n_failed"] == 4
    failed = [json.loads(line) for line in layout.failed_records.read_text().splitlines()]
    assert sorted(f["task_id"] for f in failed) == sorted(manifest_task_ids(layout))
    for entry in failed:
        FailedTask.model_validate(entry)
        assert entry["failure_class"] == "ess" and entry["failure_reason"] == "injected_failure"
    assert load_records(layout)["failed"] == failed
    # the API's view of them (PipeAPI.collect) is that one model, frozen, under the same names
    api_view = run_results("main", load_records(layout), layout).failed
    assert api.FailedTask is FailedTask and all(isinstance(f, FailedTask) for f in api_view)
    assert [(f.task_id, f.owner_key, f.status, f.attempt_index, f.failure_class, f.failure_reason)
            for f in api_view] == [(f["task_id"], f["owner_key"], "FAILED_ESS", 0, "ess", "injected_failure")
                                   for f in failed]
    with pytest.raises(ValidationError):
        api_view[0].status = "COMPLETED"


@pytest.mark.parametrize("damage, field", [
    (lambda text: text.replace('"owner_type":"species"', '"owner_type":"molecule"', 1), "line 1.owner_type"),
    (lambda text: text.split("\n", 1)[0][:40] + "\n", "line 1"),
    (lambda text: text.replace('"cost":', '"kost":', 1), "line 1."),
])
@pytest.mark.slow
def test_a_damaged_records_file_is_one_line_naming_file_line_and_field(staged_run, damage, field):
    layout = staged_run(3)
    run_worker(layout.root, install_signals=False, linger=False)
    ingest(layout)
    layout.records.write_text(damage(layout.records.read_text()))
    for command in ("results", "report"):
        proc = pipe_rules_cli(command, str(layout.root))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (command, proc.stderr)
        assert lines[0].startswith(f"pipe-rules: error: {layout.records}: field '{field}"), lines[0]
        assert "pipe-rules ingest" in lines[0]


def test_results_of_schema_1_say_how_to_migrate_and_a_schema_1_manifest_keeps_working(staged_run, tmp_path):
    """A run folder written before the streams: manifest.json and results/records.json. status and
    ingest read the old manifest; `results` on the old records says, in one line, to re-ingest; staging
    again converts the manifest to manifest.tsv + aliases.jsonl and changes no task."""
    layout = staged_run(3)
    run_worker(layout.root, install_signals=False, linger=False)
    entries = list(iter_entries(layout))
    layout.manifest_v1.write_text(json.dumps({"run_id": "test.main", "aliases": {},
                                              "tasks": [[e.task_id, e.shard, e.fingerprint] for e in entries]}))
    layout.manifest.unlink()
    (layout.root / "owner_index.npz").unlink()
    layout.records_v1.write_text(json.dumps({"schema_version": 1, "owners": {}}))
    proc = pipe_rules_cli("results", str(layout.root))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "older pipe_rules" in proc.stderr and f"run 'pipe-rules ingest {layout.root}'" in proc.stderr
    status = json.loads(pipe_rules_cli("status", str(layout.root), "--json", check=True).stdout)
    assert status["tasks"]["COMPLETED"] == 3 and sorted(status["owners"]) == ["h2_0", "h2_1", "h2_2"]
    pipe_rules_cli("ingest", str(layout.root), check=True)
    assert len(load_records(layout)["owners"]) == 3
    before = {e.task_id: layout.state(e.task_id).read_bytes() for e in entries}
    report = stage_run(load_campaign(write_config(tmp_path, 3)), "main")
    assert (report.new_tasks, report.existing_tasks) == (0, 3)
    assert layout.manifest.exists() and not layout.manifest_v1.exists()
    assert list(iter_entries(layout)) == entries
    assert before == {e.task_id: layout.state(e.task_id).read_bytes() for e in entries}


# ---------------------------------------------------------------------------------------------
# Reads that must not grow with the run: a lingering worker's watch, the progress display


def test_a_lingering_worker_reads_each_watched_state_once_until_its_lease_can_expire(staged_run, monkeypatch):
    import pipe_rules.execution.worker as worker_module
    from pipe_rules.store.lifecycle import claim_and_start

    layout = staged_run(6, lease_s=30)
    run = read_run(layout)
    for task_id in manifest_task_ids(layout):  # another worker holds every task
        claim_and_start(layout, task_id, run.lock_mode, "other:1", run.lease_s)
    reads = []
    real = worker_module.read_state
    monkeypatch.setattr(worker_module, "read_state", lambda lay, t: reads.append(t) or real(lay, t))
    watch = worker_module._Watch()
    inflight = sorted(p.name for p in layout.inflight_dir.iterdir())
    for _ in range(5):  # five linger rounds within the leases
        assert watch.expired(layout, run, inflight) == []
    assert sorted(reads) == inflight  # once each, not 5 x 6
    future = max(watch.due.values()) + 1
    monkeypatch.setattr(worker_module.time, "time", lambda: future)
    assert watch.expired(layout, run, inflight) == inflight  # all due: read again, all expired
    assert len(reads) == 2 * len(inflight)


def test_progress_counts_from_the_ledgers_match_the_tokens_without_listing_pending(staged_run, monkeypatch):
    import pipe_rules.reporting.status as status_module

    layout = staged_run(8)
    run_worker(layout.root, install_signals=False, linger=False, max_tasks=5)
    expected = status_module.token_counts(layout, 8)
    listed = []
    real = status_module._file_names
    monkeypatch.setattr(status_module, "_file_names", lambda folder, depth: listed.append(folder) or real(folder, depth))
    counter = status_module.ProgressCounter(layout)
    for _ in range(2):
        counts = counter.counts(8)
        assert counts == expected and counts["COMPLETED"] == 5 and counts["PENDING"] == 3
    assert listed and not any(folder == layout.pending_dir or layout.pending_dir in folder.parents for folder in listed)
    ledger = next(layout.root.joinpath("costs").glob("*.tsv"))  # a schema-1 ledger line (no outcome)
    with open(ledger, "a") as handle:
        handle.write("h2_0_species_sp\t0\t1\t0.1\t0.1\t10.000\n")
    assert status_module.ProgressCounter(layout).counts(8) == status_module.token_counts(layout, 8)


def test_inputs_seen_three_times_are_computed_once_and_merged_into_the_first(tmp_path):
    from pipe_rules.store.manifest import iter_aliases

    first = _spec(0, 0)
    copies = [dict(first, task_id=f"s{k}_conf_opt_0", owner_key=f"s{k}") for k in (7, 9)]
    layout = _tasks_campaign(tmp_path, [json.dumps(s) + "\n" for s in [_spec(1, 0), first, *copies]])
    report = stage_run(load_campaign(tmp_path / "config.yaml"), "main")
    assert (report.new_tasks, report.duplicates) == (2, 2)
    assert {a: alias["of"] for a, alias in iter_aliases(layout)} == {"s7_conf_opt_0": "s0_conf_opt_0",
                                                                      "s9_conf_opt_0": "s0_conf_opt_0"}


def test_owner_index_finds_ids_by_hash_whatever_their_width_and_ignores_unknown_ids(staged_run):
    from pipe_rules.store.owner_index import id_array, load_owner_index

    layout = staged_run(5)
    index = load_owner_index(layout)
    ids = sorted(e.task_id for e in iter_entries(layout))
    owners = {e.task_id: e.owner for e in iter_entries(layout)}
    wide = np.array([i.encode() for i in ids] + [b"x" * 64], dtype="S64")  # wider than any staged id
    for query in (ids, id_array(ids[::-1]), wide[:-1]):
        got = [index.owners[o] for o in index.owners_of(query).tolist()]
        assert got == [owners[i.decode() if isinstance(i, bytes) else str(i)] for i in list(query)]
    assert index.owners_of(["not_a_task", ids[0] + "x", ids[0][:-1]]).tolist() == [-1, -1, -1]
    assert index.positions_of(wide[-1:]).tolist() == [-1]
