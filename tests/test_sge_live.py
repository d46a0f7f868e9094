"""The sge profile on the real Grid Engine (Son of Grid Engine 8.1.9, tests/cluster/start_sge.sh).

Every run is ONE `qsub -t 1-K`; `qacct` shows one array task per shard, each with ONE shard's
slots; `qdel JOB.TASK` of a running element re-runs only that element; Ctrl-C is one `qdel`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, interruptible, wait_until, write_config

from pipe_rules.schedulers import status as status_module
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state

pytestmark = [pytest.mark.sge, pytest.mark.slow]


def sge_environment() -> dict:
    env = dict(os.environ)
    env_file = REPO / "tests/cluster/sge.env"
    for line in env_file.read_text().splitlines() if env_file.exists() else []:
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env.setdefault(key, value)
    env.setdefault("SGE_ROOT", "/var/lib/gridengine")
    env.setdefault("SGE_CELL", "default")
    for name in ("PIPE_RULES_CLUSTER_STATE", "PIPE_RULES_JOB_SETUP"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def sge():
    """A usable Grid Engine queue all.q, started by tests/cluster/start_sge.sh if need be."""
    env, script = sge_environment(), REPO / "tests/cluster/start_sge.sh"
    reason = os.environ.get("PIPE_RULES_SGE_UNAVAILABLE")
    if reason is None and os.geteuid() == 0:
        proc = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=600)
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        reason = None if proc.returncode == 0 and last[0].startswith("sge ready") else last[0]
    elif reason is None:
        reason = "not root: start_sge.sh must run as root"
    ok = shutil.which("qconf") and subprocess.run(["qconf", "-sq", "all.q"], env=env, capture_output=True,
                                                  text=True).returncode == 0
    if reason is not None or not ok:
        pytest.skip(f"SGE cannot start here: {reason}")
    slots = subprocess.run(["qconf", "-sq", "all.q"], env=env, capture_output=True, text=True).stdout
    return env, int(next(line.split()[1] for line in slots.splitlines() if line.startswith("slots ")))


def counting_shims(folder: Path, env: dict) -> dict:
    """qsub/qdel that log their arguments, then run the real command: counts submissions exactly."""
    folder.mkdir()
    for command in ("qsub", "qdel"):
        real = shutil.which(command, path=env["PATH"])
        shim = folder / command
        shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {folder}/{command}.log\nexec {real} "$@"\n')
        shim.chmod(0o755)
    return dict(env, PATH=f"{folder}:{env['PATH']}")


def shim_calls(folder: Path, command: str) -> list[str]:
    log = folder / f"{command}.log"
    return log.read_text().splitlines() if log.exists() else []


def snakemake(*extra: str) -> list[str]:
    return [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"), "--configfile",
            "config.yaml", "--profile", str(REPO / "profiles" / "sge"), "--seconds-between-status-checks", "1",
            "--latency-wait", "5", "--pipe-rules-status-grace", "10", *extra]


def submitted_arrays(folder: Path) -> list[str]:
    """Array numbers from Snakemake's log lines `pipe_rules: submitted sge array N (...)`."""
    return re.findall(r"pipe_rules: submitted sge array (\d+) ", "".join(
        p.read_text() for p in (folder / ".snakemake/log").glob("*.log")))


def qacct_tasks(env: dict, number: str) -> dict[int, dict[str, str]]:
    """taskid -> qacct fields of array `number` (accounting is written when a task ends)."""
    text = subprocess.run(["qacct", "-j", number], env=env, capture_output=True, text=True).stdout
    tasks = {}
    for block in text.split("=" * 62):
        fields = dict(re.findall(r"^(\w+)\s+(.*?)\s*$", block, re.MULTILINE))
        if fields.get("jobnumber") == number:
            tasks[int(fields["taskid"])] = fields
    return tasks


def our_jobs(env: dict, numbers: set[str]) -> list[str]:
    out = subprocess.run(["qstat", "-xml", "-u", "*"], env=env, capture_output=True, text=True).stdout
    return sorted({n for n, _ in status_module.parse_sge_xml(out) if n in numbers})


def clean_up(env: dict, folder: Path) -> None:
    leftovers = our_jobs(env, set(submitted_arrays(folder)))
    if leftovers:
        subprocess.run(["qdel", *leftovers], env=env, capture_output=True)


def completed_exactly_once(layout: RunLayout) -> list:
    states = [read_state(layout, t) for t in manifest_task_ids(layout)]
    for state in states:
        assert state.status is TaskState.COMPLETED, (state.task_id, state.failure_reason)
        assert [h["to"] for h in state.history].count("COMPLETED") == 1, state.history
    return states


def test_live_sge_two_runs_are_two_qsub_each_element_one_shards_slots(tmp_path, sge):
    env, slots = sge
    runs = [{"name": "a", "family": "species_sp", "cores": 1, "shards": 3},  # 3 shards on 2 slots: queued, then run
            {"name": "b", "family": "species_sp", "cores": min(2, slots), "shards": 2}]
    write_config(tmp_path, 6, runs=runs, options={"sleep_s": 0.5})
    (tmp_path / "setup.txt").write_text('export PIPE_RULES_MARK="set-up ran"\ntouch "$(touch pwned)"\n')
    env = dict(counting_shims(tmp_path / "bin", env), PIPE_RULES_JOB_SETUP=str(tmp_path / "setup.txt"))
    started = time.time()
    proc = subprocess.run(snakemake(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.time() - started
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
        submissions = shim_calls(tmp_path / "bin", "qsub")
        assert len(submissions) == 2, submissions  # exactly one qsub per run
        by_run = {re.search(r"-N pr_run_shard_(\w+)", s).group(1): s for s in submissions}
        assert "-t 1-3 -pe smp 1 -l h_vmem=2000M -l h_rt=01:00:00" in by_run["a"]
        assert f"-t 1-2 -pe smp {min(2, slots)} " in by_run["b"]
        arrays = submitted_arrays(tmp_path)
        for run, cores, shards in (("a", 1, 3), ("b", min(2, slots), 2)):
            layout = RunLayout(tmp_path / "runs/test" / run)
            completed_exactly_once(layout)
            elements = {read_result(layout.result(t, 0))["worker"]["scheduler_job_id"] for t in manifest_task_ids(layout)}
            (number,) = {e.split(".")[0] for e in elements}  # every result names an element of ONE array
            wait_until(lambda: len(qacct_tasks(env, number)) == shards, timeout=60, what=f"qacct of array {number}",
                       poll_s=0.5)
            tasks = qacct_tasks(env, number)
            assert sorted(tasks) == list(range(1, shards + 1))  # one array task per shard
            assert {t["slots"] for t in tasks.values()} == {str(cores)}  # each with ONE shard's slots
            assert {t["exit_status"] for t in tasks.values()} == {"0"}
            print(f"live SGE run {run}: array {number}, qacct tasks " +
                  ", ".join(f"{i}: slots {t['slots']} on {t['hostname']}" for i, t in sorted(tasks.items())))
        assert not (tmp_path / "pwned").exists() and (tmp_path / "$(touch pwned)").exists()
        logs = "".join(p.read_text() for p in (tmp_path / "logs/cluster").glob("*.err"))
        scratch = re.findall(r"pipe_rules: element \d+ \((\S+)\) on \S+, scratch (\S+)\n", logs)
        assert len(scratch) == 5 and not any(Path(folder).exists() for _, folder in scratch), logs
        print(f"live SGE: 2 runs (3 + 2 shards), {len(submissions)} qsub, {elapsed:.1f} s end to end ({arrays})")
    finally:
        clean_up(env, tmp_path)


def test_live_sge_qdel_of_one_running_element_reruns_only_that_element(tmp_path, sge):
    env, slots = sge
    write_config(tmp_path, 12, shards=3, cores=1, lease_s=4, heartbeat_s=1, clock_skew_s=0, linger_s=20,
                 options={"sleep_s": 2})
    env = counting_shims(tmp_path / "bin", env)
    layout = RunLayout(tmp_path / "runs/test/main")
    head = subprocess.Popen(snakemake(), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        def running_element() -> str | None:
            arrays = submitted_arrays(tmp_path)
            if not arrays or not layout.manifest.exists():
                return None
            out = subprocess.run(["qstat", "-xml"], env=env, capture_output=True, text=True).stdout
            running = [job.findtext("tasks") for job in ET.fromstring(out).iter("job_list")
                       if job.findtext("JB_job_number") == arrays[0] and job.findtext("state") == "r"]
            held = {read_state(layout, t).claimed_by for t in manifest_task_ids(layout)
                    if read_state(layout, t).status is TaskState.RUNNING}
            for index in running:  # an element whose own worker holds a task (not just any element)
                shard = element_shard(arrays[0], int(index))
                if shard and any(f":{shard}:" in (worker or "") for worker in held):
                    return f"{arrays[0]}.{index}"
            return None

        def element_shard(number: str, index: int) -> str | None:
            """The shard element `index` runs, from its job script (the run_shard job's wildcards)."""
            log = "".join(p.read_text() for p in (tmp_path / ".snakemake/log").glob("*.log"))
            line = re.search(rf"pipe_rules: submitted sge array {number} .*", log)
            for folder in (tmp_path / ".snakemake/pipe_rules_arrays/arrays").iterdir():
                script = folder / "elements" / f"{index}.sh"
                if line and folder.name in line.group(0) and script.exists():
                    found = re.search(r"shard=([A-Za-z0-9_.-]+)", script.read_text())
                    return found.group(1) if found else None
            return None

        wait_until(running_element, timeout=180, what="a running element holding a task", poll_s=0.2)
        victim = running_element()
        subprocess.run(["qdel", victim], env=env, check=True, capture_output=True)
        output, _ = head.communicate(timeout=600)
        assert head.returncode == 0, output[-4000:]
        states = completed_exactly_once(layout)  # nothing lost, nothing completed twice
        number, index = victim.split(".")
        submissions = shim_calls(tmp_path / "bin", "qsub")
        assert [re.search(r"-t (\S+)", s).group(1) for s in submissions] == ["1-3", "1-1"], submissions
        retry = submitted_arrays(tmp_path)[1]  # the victim alone, as a one-element array
        wait_until(lambda: len(qacct_tasks(env, retry)) == 1 and len(qacct_tasks(env, number)) == 3, timeout=60,
                   what="accounting of both arrays", poll_s=0.5)
        assert qacct_tasks(env, retry)[1]["exit_status"] == "0"
        killed = qacct_tasks(env, number)[int(index)]
        siblings = [t for i, t in qacct_tasks(env, number).items() if i != int(index)]
        assert killed["exit_status"] != "0" and {t["exit_status"] for t in siblings} == {"0"}  # siblings unharmed
        assert f"array element {victim} failed" in output
        interrupted = [s for s in states if s.attempt_index >= 1]
        assert interrupted, "the killed element was running a task: it must have been re-run"
        print(f"live SGE qdel {victim}: re-run as array {retry}; {len(interrupted)} task(s) re-run, "
              f"qacct {number}: " + ", ".join(f"{i}: exit {t['exit_status']}" for i, t in
                                             sorted(qacct_tasks(env, number).items())))
    finally:
        if head.poll() is None:
            head.kill()
        clean_up(env, tmp_path)


def test_live_sge_ctrl_c_cancels_with_one_qdel(tmp_path, sge):
    env, slots = sge
    write_config(tmp_path, 4, shards=2, options={"sleep_s": 30}, lease_s=60, linger_s=1)
    env = counting_shims(tmp_path / "bin", env)
    layout = RunLayout(tmp_path / "runs/test/main")
    head = subprocess.Popen(snakemake(), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=interruptible)
    try:
        wait_until(lambda: submitted_arrays(tmp_path) and layout.manifest.exists() and any(
            read_state(layout, t).status is TaskState.RUNNING for t in manifest_task_ids(layout)),
            timeout=180, what="a running shard", poll_s=0.5)
        (array,) = submitted_arrays(tmp_path)
        head.send_signal(signal.SIGINT)
        output, _ = head.communicate(timeout=120)
        assert shim_calls(tmp_path / "bin", "qdel") == [array], output[-3000:]  # ONE qdel, the whole array
        wait_until(lambda: our_jobs(env, {array}) == [], timeout=60, what="the array gone from qstat")
    finally:
        if head.poll() is None:
            head.kill()
        clean_up(env, tmp_path)


def test_live_sge_throttle_runs_at_most_max_running_shards_elements_at_once(tmp_path, sge):
    """max_running_shards: 1 becomes `-tc 1`: qacct shows the three elements one after the other."""
    env, slots = sge
    write_config(tmp_path, 6, shards=3, cores=1, max_running_shards=1, options={"sleep_s": 0.5})
    env = counting_shims(tmp_path / "bin", env)
    proc = subprocess.run(snakemake(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
        (submission,) = shim_calls(tmp_path / "bin", "qsub")
        assert " -t 1-3 -tc 1 " in submission
        completed_exactly_once(RunLayout(tmp_path / "runs/test/main"))
        (number,) = submitted_arrays(tmp_path)
        wait_until(lambda: len(qacct_tasks(env, number)) == 3, timeout=60, what="qacct of the array", poll_s=0.5)

        def stamp(text: str) -> float:
            return time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y"))

        spans = sorted((stamp(t["start_time"]), stamp(t["end_time"])) for t in qacct_tasks(env, number).values())
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans  # never two at once
    finally:
        clean_up(env, tmp_path)
