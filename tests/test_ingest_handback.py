"""Ingestion runs on the submit host (a login node): it never starts an engine or runs a task.

Unfinished work is waited for while a live worker holds it, and otherwise handed back to the
cluster: the summary files of the shards that still have work are removed (so the next Snakemake
pass submits an element for each) and `pipe-rules ingest` exits 3 with one line saying so.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import PYTHON, wait_until, write_config

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import claim_and_start, finish
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.records_io import load_records
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state

# Runs `pipe-rules ingest` in-process and reports which pipe_rules modules it imported: an engine or
# the worker loop imported at all would mean ingestion could compute on the login node.
INGEST_AND_REPORT_IMPORTS = """
import json, sys
from pipe_rules.cli.main import main
code = main(["ingest", sys.argv[1], *sys.argv[2:]])
loaded = sorted(m for m in sys.modules if m.startswith(("pipe_rules.engines", "pipe_rules.execution")))
print(json.dumps({"code": code, "loaded": loaded}))
"""


def ingest(layout: RunLayout, *args: str) -> tuple[dict, str]:
    proc = subprocess.run([PYTHON, "-c", INGEST_AND_REPORT_IMPORTS, str(layout.root), *args],
                          capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def end_every_shard_job(layout: RunLayout) -> list[str]:
    """What Snakemake leaves when every run_shard job has finished: one summary file per shard."""
    shards = sorted({p.name for p in layout.pending_dir.iterdir()})
    layout.shards_dir.mkdir(exist_ok=True)
    for shard in shards:
        layout.shard_record(shard).write_text("{}\n")
    return shards


def test_pending_tasks_are_handed_back_not_run(staged_run):
    layout = staged_run(4, shards=2)
    shards = end_every_shard_job(layout)
    before = {t: read_state(layout, t) for t in manifest_task_ids(layout)}
    outcome, stderr = ingest(layout, "--wait", "0")
    assert outcome == {"code": 3, "loaded": []}  # no engine, no worker module even imported
    assert stderr == (f"pipe-rules: error: {layout.root}: 4 task(s) not finished after every shard job ended "
                      f"(PENDING 4); handed back to {', '.join(shards)} (their shards/*.json removed): run the "
                      "campaign again and Snakemake submits an array element per shard to finish them. "
                      "Ingestion never runs tasks on this host.\n")
    for task_id, state in before.items():  # nothing claimed, nothing attempted
        after = read_state(layout, task_id)
        assert (after.status, after.attempt_index, after.history) == (TaskState.PENDING, 0, state.history)
        assert list(layout.attempts_dir(task_id).iterdir()) == []  # attempts/ is made at staging: empty
    assert not (layout.root / "costs").exists() or not any((layout.root / "costs").iterdir())
    assert [layout.shard_record(s).exists() for s in shards] == [False, False]
    assert not layout.summary.exists() and not layout.records.exists()
    marker = json.loads((layout.results_dir / "handed_back.json").read_text())
    assert (marker["unfinished"], marker["shards"]) == ({"PENDING": 4}, shards)


def test_a_dead_workers_task_is_requeued_and_handed_back_to_its_shard_only(staged_run):
    layout = staged_run(4, shards=2, lease_s=2, heartbeat_s=0.5, clock_skew_s=0)
    end_every_shard_job(layout)
    task_ids = manifest_task_ids(layout)
    for task_id in task_ids[1:]:  # every task but one already done by the shard jobs
        claim = claim_and_start(layout, task_id, "flock", "w-done", 30)
        finish(layout, claim, "flock", TaskState.COMPLETED, None, None)
    dead = claim_and_start(layout, task_ids[0], "flock", "w-dead", 1)  # its worker was SIGKILLed
    assert dead is not None
    shard_of_dead = read_state(layout, task_ids[0]).shard
    outcome, stderr = ingest(layout)  # default wait: one lease + skew, then the lease has expired
    assert outcome == {"code": 3, "loaded": []}, stderr
    state = read_state(layout, task_ids[0])
    assert (state.status, state.attempt_index) == (TaskState.PENDING, 1)  # re-queued for the cluster
    assert [h["to"] for h in state.history] == ["CLAIMED", "RUNNING", "ORPHANED", "PENDING"]
    others = {read_state(layout, t).shard for t in task_ids[1:]} - {shard_of_dead}
    assert not layout.shard_record(shard_of_dead).exists()
    assert all(layout.shard_record(s).exists() for s in others)  # their shards keep their summaries
    assert f"(PENDING 1); handed back to {shard_of_dead} " in stderr


@pytest.mark.slow
def test_ingestion_waits_for_a_live_worker_then_writes_the_records(staged_run):
    layout = staged_run(2, shards=1, lease_s=5, heartbeat_s=1, clock_skew_s=0, linger_s=0,
                        options={"sleep_s": 2})
    end_every_shard_job(layout)
    worker = subprocess.Popen([PYTHON, "-m", "pipe_rules", "work", str(layout.root)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: any(read_state(layout, t).status is TaskState.RUNNING for t in manifest_task_ids(layout)),
                   timeout=60, what="the worker running a task", poll_s=0.05)
        outcome, stderr = ingest(layout, "--wait", "60")  # the worker's heartbeat keeps its lease live
        assert outcome == {"code": 0, "loaded": []}, stderr
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    records = load_records(layout)
    assert records["run_state"] == "COMPLETED" and records["failed"] == [] and len(records["owners"]) == 2
    assert not (layout.results_dir / "handed_back.json").exists()
    for task_id in manifest_task_ids(layout):  # run by the worker process, not by ingestion
        assert read_result(layout.result(task_id, 0))["worker"]["pid"] == worker.pid


def test_pipe_rules_run_runs_snakemake_again_after_a_hand_back(tmp_path, monkeypatch):
    """The second Snakemake pass is what submits the extra shard element (the first pass ended with
    ingestion's exit 3); without a hand-back a failed pass is not repeated."""
    from pipe_rules.host import launch
    from pipe_rules.inputs.config import load_campaign
    from pipe_rules.store.handback import handback_marker

    config = write_config(tmp_path, 2)
    layout = RunLayout(load_campaign(config).run_dir("main"))
    passes = []

    def snakemake_pass(command):
        passes.append(command)
        if len(passes) == 1:  # what ingest_run leaves when it hands tasks back
            handback_marker(layout).parent.mkdir(parents=True, exist_ok=True)
            handback_marker(layout).write_text("{}")
            return 1
        return 0

    monkeypatch.setattr(launch, "_inherited", snakemake_pass)
    assert launch.run_campaign(config, progress_every=0, tty=False) == 0
    assert len(passes) == 2 and passes[0] == passes[1]
    passes.clear()
    monkeypatch.setattr(launch, "_inherited", lambda command: passes.append(command) or 1)
    assert launch.run_campaign(config, progress_every=0, tty=False) == 1 and len(passes) == 1  # marker is old
