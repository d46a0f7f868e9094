"""Integration tests against a real single-node SLURM (tests/cluster/start_slurm.sh starts it).

They skip, with the reason printed by `pytest -ra`, only where SLURM cannot be started here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, interruptible, wait_until, write_config

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state
from pipe_rules.store.records_io import load_records

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
# This machine's filesystem is local: no need for the profile's 60 s latency allowance.
FAST_POLLING = ["--seconds-between-status-checks", "1", "--latency-wait", "5", "--pipe-rules-status-grace", "10"]


def _slurm_up() -> bool:
    if not shutil.which("sinfo") or subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode:
        return False  # without slurmctld, sinfo retries for ~9 s before failing
    out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return out.returncode == 0 and bool(re.search(r"idle|mixed|allocated", out.stdout))


@pytest.fixture(scope="module", autouse=True)
def slurm():
    if not _slurm_up():
        reason = os.environ.get("PIPE_RULES_SLURM_UNAVAILABLE")
        if reason is None and os.geteuid() == 0:
            proc = subprocess.run([str(REPO / "tests/cluster/start_slurm.sh")], capture_output=True, text=True)
            reason = None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip().splitlines()[-1:]
        if not _slurm_up():
            pytest.skip(f"SLURM cannot be started on this machine: {reason or 'not root'}")


def slurm_jobs() -> dict[str, dict[str, str]]:
    """Every job the controller remembers (MinJobAge=600 keeps finished ones), by JobId."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def submissions_since(before: dict, folder: Path) -> dict[str, list[dict]]:
    """New submissions from `folder` (an array counts once) -> their elements; other users' jobs
    on the same controller are ignored."""
    grouped: dict[str, list[dict]] = {}
    for job_id, fields in slurm_jobs().items():
        if job_id not in before and fields.get("WorkDir") == str(folder):
            grouped.setdefault(fields.get("ArrayJobId", job_id), []).append(fields)
    return grouped


def snakemake_cmd(profile: str, *extra: str) -> list[str]:
    polling = FAST_POLLING if profile == "slurm" else []
    return [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"), "--configfile",
            "config.yaml", "--profile", str(REPO / "profiles" / profile), *polling, *extra]


def run_snakemake(folder: Path, profile: str = "slurm", *extra: str, timeout: float = 600):
    proc = subprocess.run(snakemake_cmd(profile, *extra), cwd=folder, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def assert_completed_exactly_once(layout: RunLayout) -> list:
    states = [read_state(layout, t) for t in manifest_task_ids(layout)]
    for state in states:
        assert state.status is TaskState.COMPLETED, (state.task_id, state.failure_reason)
        assert [h["to"] for h in state.history].count("COMPLETED") == 1, state.history
    return states


def count_state(layout: RunLayout, status: TaskState) -> int:
    return sum(read_state(layout, t).status is status for t in manifest_task_ids(layout))


def test_a_campaign_of_real_tasks_is_one_array_submission(tmp_path):
    write_config(tmp_path, 24, engine="tblite", shards=4, lease_s=60, heartbeat_s=5)
    before = slurm_jobs()
    run_snakemake(tmp_path)
    submissions = submissions_since(before, tmp_path)
    assert len(submissions) == 1, submissions
    (elements,) = submissions.values()
    assert sorted(int(e["ArrayTaskId"]) for e in elements) == [1, 2, 3, 4]
    layout = RunLayout(tmp_path / "runs/test/main")
    assert_completed_exactly_once(layout)
    records = load_records(layout)
    assert len(records["owners"]) == 24 and records["run_state"] == "COMPLETED"
    assert all(r["e_elect_hartree"] < -0.9 for r in records["owners"].values())
    job_ids = {read_result(layout.result(t, 0))["worker"]["scheduler_job_id"] for t in manifest_task_ids(layout)}
    assert {j.split("_")[0] for j in job_ids} == set(submissions)  # results name their array element


def test_plain_snakemake_profile_slurm_after_pipe_rules_init(tmp_path):
    """`snakemake --profile slurm` as written, in a folder holding only config.yaml: `pipe-rules init`
    installed the profile where Snakemake looks (XDG_CONFIG_HOME here), naming the package's Snakefile."""
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    subprocess.run([PYTHON, "-m", "pipe_rules", "init", "--profile", "slurm", "--no-config"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    write_config(tmp_path, 6, shards=2)
    before = slurm_jobs()
    proc = subprocess.run([PYTHON, "-m", "snakemake", "--profile", "slurm", *FAST_POLLING], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(submissions_since(before, tmp_path)) == 1  # the shards as one array
    records = load_records(RunLayout(tmp_path / "runs/test/main"))
    assert records["run_state"] == "COMPLETED" and len(records["owners"]) == 6


def test_scancel_of_element_1_reruns_only_that_element_and_its_siblings_never_fail(tmp_path):
    """snakemake-executor-plugin-slurm 2.8.0 made every element check the FIRST element's outputs
    (upstream #447): cancelling element 1 failed its siblings. Here each element is its own job."""
    write_config(tmp_path, 12, shards=3, lease_s=4, heartbeat_s=1, clock_skew_s=0, linger_s=20,
                 options={"sleep_s": 3})
    layout = RunLayout(tmp_path / "runs/test/main")
    before = slurm_jobs()
    head = subprocess.Popen(snakemake_cmd("slurm"), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)

    def element_1_running() -> bool:
        elements = [e for es in submissions_since(before, tmp_path).values() for e in es]
        return any(e.get("ArrayTaskId") == "1" and e.get("JobState") == "RUNNING" for e in elements) \
            and count_state(layout, TaskState.RUNNING) >= 1

    wait_until(element_1_running, timeout=120, what="array element 1 running a task", poll_s=0.2)
    (array_id,) = submissions_since(before, tmp_path)
    subprocess.run(["scancel", f"{array_id}_1"], check=True)
    output, _ = head.communicate(timeout=600)
    assert head.returncode == 0, output[-4000:]
    assert_completed_exactly_once(layout)  # nothing lost, nothing completed twice
    submissions = submissions_since(before, tmp_path)
    assert sorted(len(elements) for elements in submissions.values()) == [1, 3], submissions  # element 1 alone again
    siblings = {e["ArrayTaskId"]: e["JobState"] for e in submissions[array_id]}
    assert siblings == {"1": "CANCELLED", "2": "COMPLETED", "3": "COMPLETED"}, siblings  # never failed
    assert f"array element {array_id}_1 failed" in output and f"{array_id}_2 failed" not in output
    assert "MissingOutputException" not in output
    print(f"live SLURM scancel {array_id}_1: elements {siblings}; resubmitted alone as "
          f"{[j for j in submissions if j != array_id]}")


def test_walltime_kill_hands_the_task_back_and_the_run_completes(tmp_path):
    # SLURM checks limits every ~30 s. Task 1 must end and task 2 start inside the first 1-minute job, and
    # the retried job must start, run task 2 and exit inside its minute: 45 s tasks and no lingering
    # leave ~15 s on each side for the element's Snakemake to start and stop on a loaded machine
    # (with 50 s tasks and 5 s of lingering the second job ended a few seconds past its minute).
    write_config(tmp_path, 2, shards=1, walltime_min=1, lease_s=30, heartbeat_s=2, linger_s=0, options={"sleep_s": 45})
    run_snakemake(tmp_path, "slurm", timeout=900)
    layout = RunLayout(tmp_path / "runs/test/main")
    states = assert_completed_exactly_once(layout)
    killed = [s for s in states if s.attempt_index == 1]
    assert len(killed) == 1
    (state,) = killed
    assert [h["to"] for h in state.history] == ["CLAIMED", "RUNNING", "FAILED_RETRYABLE", "PENDING", "CLAIMED",
                                                "RUNNING", "COMPLETED"]
    first = read_result(layout.result(state.task_id, 0))
    assert (first["status"], first["failure_reason"]) == ("FAILED", "terminated")


def _interrupt_midway(folder: Path, profile: str, layout: RunLayout, done: int) -> None:
    """Ctrl-C in the user's terminal: SIGINT to Snakemake's whole process group."""
    head = subprocess.Popen(snakemake_cmd(profile), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=interruptible)
    wait_until(lambda: layout.manifest.exists() and count_state(layout, TaskState.COMPLETED) >= done,
               timeout=300, what=f"{done} completed tasks", poll_s=0.2)
    os.killpg(head.pid, signal.SIGINT)
    head.communicate(timeout=120)


@pytest.mark.parametrize("first_profile", ["slurm", "local"])
def test_an_interrupted_run_resumes_on_slurm_without_redoing_work(tmp_path, first_profile):
    """Restart re-attaches and runs only the missing work; the profile is only transport."""
    write_config(tmp_path, 16, shards=2, lease_s=5, heartbeat_s=1, clock_skew_s=0, linger_s=10,
                 options={"sleep_s": 1})
    layout = RunLayout(tmp_path / "runs/test/main")
    _interrupt_midway(tmp_path, first_profile, layout, done=4)
    finished = {t: layout.result(t, read_state(layout, t).attempt_index).read_bytes()
                for t in manifest_task_ids(layout) if read_state(layout, t).status is TaskState.COMPLETED}
    assert 4 <= len(finished) < 16
    run_snakemake(tmp_path, "slurm")
    assert_completed_exactly_once(layout)
    for task_id, content in finished.items():
        assert layout.result(task_id, read_state(layout, task_id).attempt_index).read_bytes() == content
    assert load_records(layout)["run_state"] == "COMPLETED"
