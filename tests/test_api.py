"""A host program (like ARC) drives runs through pipe_rules.api on profiles/local: create, launch
without blocking, poll, a host restart mid-run (launcher killed), re-attach from disk, resume,
collect typed records; energies checked against tblite called directly here."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import tblite_energy

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.contracts.xyz import xyz_dict_from_text
from pipe_rules.host.api import PipeAPI, RunPoll
from pipe_rules.host.run_results import OwnerRecord
from pipe_rules.host.planner import plan
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.taskstate import read_state
from pipe_rules.store.records_io import load_records

# ARC-style species records; conformer optimisations of these take 0.1-1 s each here
SPECIES = [{"label": "butanol", "smiles": "CCCCO"}, {"label": "pentane", "smiles": "CCCCC"},
           {"label": "ether", "smiles": "CCOCC"}, {"label": "propanoic_acid", "smiles": "CCC(=O)O"},
           {"label": "acetone", "smiles": "CC(C)=O", "charge": 0, "multiplicity": 1},
           {"label": "water", "xyz": "3\nwater\nO 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469"}]
# one worker, short leases: a task of a killed worker is re-queued within seconds
FAST = {"shards": 1, "lease_s": 3, "heartbeat_s": 0.5, "clock_skew_s": 0, "linger_s": 6}
HANG_GUARD_S = 600  # only so a broken run cannot hang the suite; no assertion is about time


def poll_until(api: PipeAPI, name: str, condition) -> RunPoll:
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        polled = api.poll(name)
        if condition(polled):
            return polled
        time.sleep(0.1)
    raise AssertionError(f"run {name} never got there: {api.poll(name)}")


def completed_attempts(layout: RunLayout, task_id: str) -> list[int]:
    """Attempt folders of a task whose result.json says COMPLETED."""
    attempts = layout.task_dir(task_id) / "attempts"
    return sorted(int(p.parent.name) for p in attempts.glob("*/result.json")
                  if json.loads(p.read_text())["status"] == "COMPLETED")


@pytest.mark.slow
def test_full_cycle_survives_a_host_restart_mid_run(tmp_path):
    project = tmp_path / "project"
    api = PipeAPI(project)
    handle = api.create_run("confs", species=SPECIES, family="conf_opt", level="GFN2-xTB", n_conformers=3, **FAST)
    assert api.poll("confs") == RunPoll("confs", "CREATED", {}, False)
    first = api.launch("confs", profile="local")  # returns at once
    assert first.pid and first.launches == 1 and api.poll("confs").launcher_alive
    with pytest.raises(PipeRulesError, match=r"run 'confs' is running \(launcher pid \d+\): poll or cancel it"):
        api.launch("confs")
    some_done = poll_until(api, "confs", lambda p: p.counts.get("COMPLETED", 0) >= 2)
    total = sum(some_done.counts.values())

    # The host restarts: its API object is gone and the launcher (snakemake and its workers) is killed.
    os.killpg(first.pid, signal.SIGKILL)
    del api
    host = PipeAPI(project)
    [found] = host.in_flight()
    assert found.name == "confs" and found.pid == first.pid and found.run_dir == handle.run_dir
    stopped = poll_until(host, "confs", lambda p: not p.launcher_alive)  # SIGKILL lands within moments
    assert not stopped.launcher_alive and stopped.needs_launch and not stopped.done
    assert stopped.launcher_exit is None  # killed: no exit status
    assert 2 <= stopped.counts["COMPLETED"] < total, stopped  # really stopped mid-run
    with pytest.raises(PipeRulesError, match=r"run 'confs' is not finished \((RUNNING|STAGED): .*\); "
                                             r"launch\(\) resumes it"):
        host.collect("confs")

    second = host.launch(found, profile="local")  # resumes: only the missing work runs
    assert second.launches == 2 and second.pid != first.pid
    done = poll_until(host, "confs", lambda p: p.done)
    assert done.run_state == "COMPLETED" and done.counts["COMPLETED"] == total and done.launcher_exit == 0
    assert host.in_flight() == []

    results = host.collect("confs")
    assert results.run_state == "COMPLETED" and results.family == "conf_opt" and results.level == "GFN2-xTB"
    assert results.task_counts == {"COMPLETED": total} and results.failed == ()
    assert set(results.owners) == {s["label"] for s in SPECIES}
    layout = RunLayout(Path(found.run_dir))
    ids = manifest_task_ids(layout)
    assert len(ids) == total
    for task_id in ids:  # every task COMPLETED exactly once, never run twice to COMPLETED
        state = read_state(layout, task_id)
        assert state.status.value == "COMPLETED", (task_id, state.failure_reason)
        assert [h["to"] for h in state.history].count("COMPLETED") == 1, task_id
        assert completed_attempts(layout, task_id) == [state.attempt_index], task_id
    for owner in results.owners.values():
        assert isinstance(owner, OwnerRecord) and owner.conformers
        for conformer in owner.conformers:
            assert conformer.converged and math.isfinite(conformer.energy_hartree)
            assert conformer.energy_hartree == pytest.approx(tblite_energy(conformer.geometry), abs=1e-6)
        assert owner.energy_hartree == min(c.energy_hartree for c in owner.conformers)
    assert results.owners["water"].energy_hartree == pytest.approx(-5.0705, abs=2e-3)
    log = (project / "confs" / "launcher.log").read_text()
    assert log.count("pipe_rules.api: launch ") == 2
    assert "pipe_rules.api: removing the lock of a launcher that is gone" in log  # SIGKILL left snakemake's lock


def _water_spec(index: int, level: str) -> TaskSpec:
    xyz = xyz_dict_from_text(f"O 0 0 0.117\nH 0 {0.757 + 0.01 * index:.3f} -0.469\nH 0 -0.757 -0.469")
    return TaskSpec.create(task_id=f"water_{index}_{level}", family="species_sp", owner_type="species",
                           owner_key=f"water_{index}_{level}", engine="tblite", level=level, cores=1,
                           memory_mb=2000, walltime_min=30,
                           input_payload={"xyz": xyz, "charge": 0, "multiplicity": 1})


@pytest.mark.slow
def test_planned_specs_run_through_the_api(tmp_path):
    tasks = [_water_spec(i, "GFN2-xTB") for i in range(10)] + [_water_spec(i, "GFN1-xTB") for i in range(2)]
    planned = plan(tasks, min_batch_size=10)
    [run] = planned.runs
    assert [t.task_id for t in planned.individual] == ["water_0_GFN1-xTB", "water_1_GFN1-xTB"]
    api = PipeAPI(tmp_path)
    with pytest.raises(PipeRulesError) as err:
        api.create_run("mixed", tasks=tasks)
    assert str(err.value) == ("field 'tasks.10.level': 'GFN1-xTB' but tasks.0 has 'GFN2-xTB': one run holds one "
                              "kind of task (group them with pipe_rules.api.plan)")
    handle = api.create_run(run.name, tasks=list(run.tasks), shards=2, lease_s=30, heartbeat_s=2, linger_s=1)
    assert api.create_run(run.name, tasks=[t.as_dict() for t in run.tasks], shards=2, lease_s=30,
                          heartbeat_s=2, linger_s=1) == handle  # same input again: the same run
    with pytest.raises(PipeRulesError, match="already exists with a different input; use a new name"):
        api.create_run(run.name, tasks=list(run.tasks[:5]), shards=2, lease_s=30, heartbeat_s=2, linger_s=1)
    api.launch(handle)
    poll_until(api, handle.name, lambda p: p.done)
    results = api.collect(handle.name)
    assert results.run_state == "COMPLETED" and results.task_counts == {"COMPLETED": 10}
    for spec in run.tasks:
        owner = results.owners[spec.owner_key]
        reference = tblite_energy(spec.input_payload["xyz"], "GFN2-xTB")
        assert owner.energy_hartree == pytest.approx(reference, abs=1e-7)
        assert owner.fields["e_elect"] == pytest.approx(reference * 2625.499639, rel=1e-9)


@pytest.mark.slow
def test_cancel_stops_the_launcher_and_cancels_unfinished_tasks(tmp_path):
    api = PipeAPI(tmp_path)
    species = [{"label": f"h2_{i}", "xyz": f"H 0 0 0\nH 0 0 {0.70 + 0.01 * i:.2f}"} for i in range(8)]
    api.create_run("slow", species=species, family="species_sp", engine="noop", options={"sleep_s": 1.0},
                   shards=1, lease_s=30, heartbeat_s=1, linger_s=1)
    api.launch("slow")
    poll_until(api, "slow", lambda p: p.counts.get("COMPLETED", 0) >= 1)
    cancelled = api.cancel("slow", grace_s=20)
    polled = api.poll("slow")
    assert not polled.launcher_alive and polled.done and polled.run_state == "CANCELLED"
    assert polled.launcher_exit not in (None, 0)  # snakemake was interrupted: it says so
    assert cancelled >= 1 and polled.counts["CANCELLED"] == cancelled
    assert polled.counts["COMPLETED"] + cancelled == 8
    results = api.collect("slow")
    assert {f.status for f in results.failed} == {"CANCELLED"} and len(results.failed) == cancelled
    assert results.run_state == "CANCELLED"
    with pytest.raises(PipeRulesError, match="run 'slow' was cancelled; create a new run to compute it again"):
        api.launch("slow")
    records = load_records(RunLayout(Path(api.handle("slow").run_dir)))
    assert records["task_counts"] == results.task_counts



def _ignores_sigint(pid: int) -> bool:
    mask = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask.split()[1], 16) & (1 << (signal.SIGINT - 1)))


@pytest.mark.slow
def test_a_host_that_ignores_sigint_still_gets_a_launcher_that_cancel_can_interrupt(tmp_path):
    """ARC as a daemon or under nohup ignores SIGINT; its children inherit that and a shell cannot
    trap an ignored signal, so the launcher's Snakemake ignored cancel's SIGINT (in a suite started
    in the background the run even completed during the grace, and cancel raised)."""
    import psutil

    api = PipeAPI(tmp_path)
    species = [{"label": f"h2_{i}", "xyz": f"H 0 0 0\nH 0 0 {0.70 + 0.01 * i:.2f}"} for i in range(6)]
    api.create_run("bg", species=species, family="species_sp", engine="noop", options={"sleep_s": 5.0},
                   shards=1, lease_s=30, heartbeat_s=1, linger_s=1)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host, as in the background
    try:
        handle = api.launch("bg")
    finally:
        signal.signal(signal.SIGINT, previous)
    poll_until(api, "bg", lambda p: p.counts.get("RUNNING", 0) >= 1)
    (snakemake,) = (c for c in psutil.Process(handle.pid).children() if c.cmdline()[0] != "/bin/sh")  # not the lease loop
    assert not _ignores_sigint(snakemake.pid)
    api.cancel("bg", grace_s=120)
    polled = api.poll("bg")
    assert polled.run_state == "CANCELLED" and polled.counts.get("CANCELLED", 0) >= 1 and not polled.launcher_alive

def test_a_tasks_file_of_another_kind_is_refused_at_staging(tmp_path):
    from pipe_rules.inputs.config import load_campaign
    from pipe_rules.inputs.staging import stage_run

    specs = [_water_spec(0, "GFN2-xTB").as_dict(), _water_spec(1, "GFN1-xTB").as_dict()]
    (tmp_path / "tasks.json").write_text(json.dumps(specs))
    config = tmp_path / "config.yaml"
    config.write_text(f"campaign: c\nrun_root: {tmp_path / 'runs'}\n"
                      "runs: [{name: sp, family: species_sp, tasks_file: tasks.json, walltime_min: 30}]\n")
    with pytest.raises(PipeRulesError) as err:
        stage_run(load_campaign(config), "sp")
    assert str(err.value) == (f"{tmp_path / 'tasks.json'}: field '1.level': 'GFN1-xTB' but run 'sp' has 'GFN2-xTB': "
                              "one run holds one kind of task")
    assert not (tmp_path / "runs").exists()
    config.write_text(config.read_text().replace("runs: [", "runs: [{name: x, family: conf_opt, tasks_file: t.json}, ")
                      .replace("tasks_file: tasks.json", "tasks_file: tasks.json, from_run: x"))
    with pytest.raises(PipeRulesError) as err:
        load_campaign(config)
    assert str(err.value) == f"{config}: field 'runs.1.tasks_file': give tasks_file or from_run, not both"


def test_a_tasks_file_run_refuses_its_own_options_which_would_reach_no_task(tmp_path):
    """A ready spec's options are its own (and part of its fingerprint): run options beside a tasks
    file were once ignored without a word. defaults.options, meant for the species runs, still load."""
    from pipe_rules.inputs.config import load_campaign

    (tmp_path / "tasks.json").write_text(json.dumps([_water_spec(0, "GFN2-xTB").as_dict()]))
    config = tmp_path / "config.yaml"
    run = "{name: sp, family: species_sp, tasks_file: tasks.json, walltime_min: 30"
    config.write_text(f"campaign: c\nrun_root: {tmp_path / 'runs'}\nruns: [{run}, options: {{fmax: 0.01}}}}]\n")
    with pytest.raises(PipeRulesError) as err:
        load_campaign(config)
    assert str(err.value) == (f"{config}: field 'runs.0.options': a tasks_file run takes each task's options from "
                              "its spec (they are part of its fingerprint); move these options into the specs or "
                              "remove them")
    config.write_text(f"campaign: c\nrun_root: {tmp_path / 'runs'}\ndefaults: {{options: {{fmax: 0.01}}}}\n"
                      f"runs: [{run}}}]\n")
    assert load_campaign(config).runs[0].tasks_file == str(tmp_path / "tasks.json")
    with pytest.raises(PipeRulesError) as err:
        PipeAPI(tmp_path / "project").create_run("r", tasks=[_water_spec(0, "GFN2-xTB")], options={"fmax": 0.01})
    assert str(err.value).endswith("field 'runs.0.options': a tasks_file run takes each task's options from its spec "
                                   "(they are part of its fingerprint); move these options into the specs or remove them")
    assert not (tmp_path / "project").exists()


def test_create_run_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path):
    api = PipeAPI(tmp_path / "project")
    specs = [_water_spec(0, "GFN2-xTB")]
    cases = [
        (dict(tasks=specs, species=[{"label": "w", "smiles": "O"}]),
         "field 'create_run': give either tasks (TaskSpecs) or species (ARC species records)"),
        (dict(tasks=specs, walltime_min=60), "field 'walltime_min': 60 but the tasks have 30"),
        (dict(tasks=specs, family="conf_opt"), "field 'family': 'conf_opt' but the tasks have 'species_sp'"),
        (dict(tasks=[dict(specs[0].as_dict(), task_id="../x")]),
         "field 'tasks.0.task_id': task_id '../x' is not allowed: use 1-128 characters from A-Z a-z 0-9 _ . + - "
         "(not starting with '.' or '-', no '/' and no '..')"),
        (dict(species=[{"label": "w", "smiles": "O"}]),
         "field 'family': runs from species need a family (e.g. conf_opt, species_sp)"),
        (dict(species=[{"label": "w", "smiles": "O", "multiplicity": 0}], family="species_sp"),
         "field 'species.0.multiplicity': species 'w': 0 is not a multiplicity (an integer >= 1)"),
        (dict(species=[{"label": "w", "smiles": "O"}], family="species_sp", level="GFN9-xTB"),
         f"{tmp_path / 'project' / 'run' / 'config.yaml'}: field 'runs.0.level': engine 'tblite' has no level "
         "'GFN9-xTB' (levels: GFN1-xTB, GFN2-xTB, IPEA1-xTB)"),
    ]
    for kwargs, message in cases:
        with pytest.raises(PipeRulesError) as err:
            api.create_run("run", **kwargs)
        assert str(err.value) == message
    assert not (tmp_path / "project").exists() and api.handles() == []
