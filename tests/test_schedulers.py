"""The `pipe-rules` executor plugin (pipe_rules/schedulers/): one array per run on every scheduler.

PBS, HTCondor and LSF cannot run here: fake commands (tests/fake_schedulers/, on PATH for these
tests only) log every call and, with FAKE_RUN_JOBS=1, really run the submitted elements with the
variables each scheduler sets. The exact submit content is checked against them, and whole
campaigns run through every profile on them. SGE's listings are captured from the real Grid Engine
8.1.9 of start_sge.sh; the live SGE tests are in test_sge_live.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, REPO, interruptible, wait_until, write_config

from pipe_rules.schedulers import commands, status, wrapper
from pipe_rules.schedulers.commands import ArrayRequest
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state

FAKES = REPO / "tests" / "fake_schedulers"
FIXTURES = FAKES / "fixtures"
SUBMIT = {"sge": "qsub", "pbs": "qsub", "htcondor": "condor_submit", "lsf": "bsub"}
CANCEL = {"sge": "qdel", "pbs": "qdel", "htcondor": "condor_rm", "lsf": "bkill"}
QUERY = {"sge": "qstat", "pbs": "qstat", "htcondor": "condor_q", "lsf": "bjobs"}


def request(scheduler: str, size: int = 3, **changes) -> ArrayRequest:
    fields = dict(scheduler=scheduler, name="pr_run_shard_main", size=size, cores=2, mem_mb=6000, runtime_min=90,
                  queue="short", account="chem-01", throttle=2)
    fields.update(changes)
    return ArrayRequest(**fields)


# --- the one submission per array: exact argv and description -----------------------------------

def test_sge_array_is_one_qsub_t_with_one_shards_slots_per_slot_memory_walltime_and_throttle():
    assert commands.submit_argv(request("sge"), Path("/s/array.sh"), Path("/l/pr.tok"), Path("/w")) == [
        "qsub", "-terse", "-cwd", "-V", "-S", "/bin/bash", "-N", "pr_run_shard_main", "-t", "1-3", "-tc", "2",
        "-pe", "smp", "2", "-l", "h_vmem=3000M", "-l", "h_rt=01:30:00", "-A", "chem-01", "-q", "short",
        "-o", "/l/pr.tok.$TASK_ID.out", "-e", "/l/pr.tok.$TASK_ID.err", "/s/array.sh"]


def test_pbs_array_is_one_qsub_j_with_select_per_element_and_a_single_shard_a_plain_job():
    assert commands.submit_argv(request("pbs"), Path("/s/array.sh"), Path("/l/pr.tok"), Path("/w")) == [
        "qsub", "-V", "-S", "/bin/bash", "-N", "pr_run_shard_main", "-J", "1-3", "-W", "max_run_subjobs=2",
        "-l", "select=1:ncpus=2:mem=6000mb", "-l", "walltime=01:30:00", "-A", "chem-01", "-q", "short",
        "-o", "/l/pr.tok.^array_index^.out", "-e", "/l/pr.tok.^array_index^.err", "/s/array.sh"]
    single = commands.submit_argv(request("pbs", size=1, throttle=None), Path("/s/a.sh"), Path("/l/p"), Path("/w"))
    assert "-J" not in single and single[-5:] == ["-o", "/l/p.1.out", "-e", "/l/p.1.err", "/s/a.sh"]  # PBS Pro refuses -J 1-1


def test_lsf_array_is_one_bsub_with_name_range_throttle_cores_memory_and_walltime():
    assert commands.submit_argv(request("lsf"), Path("/s/array.sh"), Path("/l/pr.tok"), Path("/w")) == [
        "bsub", "-J", "pr_run_shard_main[1-3]%2", "-n", "2", "-R", "span[hosts=1] rusage[mem=6000]", "-M", "6000",
        "-W", "1:30", "-P", "chem-01", "-q", "short", "-env", "all", "-cwd", "/w",
        "-o", "/l/pr.tok.%I.out", "-e", "/l/pr.tok.%I.err", "/s/array.sh"]


def test_slurm_array_is_one_sbatch_array_with_one_shards_cpus():
    assert commands.submit_argv(request("slurm", throttle=None), Path("/s/array.sh"), Path("/l/pr.tok"), Path("/w")) == [
        "sbatch", "--parsable", "-J", "pr_run_shard_main", "--array=1-3", "-c", "2", "--mem=6000", "-t", "90",
        "-p", "short", "-A", "chem-01", "--export=ALL", "-D", "/w", "-o", "/l/pr.tok.%a.out", "-e", "/l/pr.tok.%a.err",
        "/s/array.sh"]


def test_htcondor_array_is_one_description_with_queue_k():
    text = commands.condor_description(request("htcondor"), Path("/s/array.sh"), Path("/l/pr.tok"), Path("/w"),
                                       Path("/s/events.log"), ['+Project = "chem"'])
    assert text == """# HTCondor array pr_run_shard_main: 3 element(s), written by pipe_rules.schedulers
universe = vanilla
executable = /s/array.sh
arguments = $(Process)
initialdir = /w
getenv = true
should_transfer_files = NO
request_cpus = 2
request_memory = 6000M
periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > 5400)
max_materialize = 2
batch_name = pr_run_shard_main
output = /l/pr.tok.$(Process).out
error = /l/pr.tok.$(Process).err
log = /s/events.log
environment = "PIPE_RULES_CLUSTER_ID=$(ClusterId)"
+Project = "chem"
queue 3
"""


@pytest.mark.parametrize("scheduler, printed, number, array_id, element_2", [
    ("sge", "7.1-3:1\n", "7", "7", "7.2"),
    ("pbs", "123[].pbs01\n", "123", "123[].pbs01", "123[2].pbs01"),
    ("htcondor", "42.0 - 42.2\n", "42", "42", "42.1"),
    ("lsf", "Job <55> is submitted to queue <normal>.\n", "55", "55", "55[2]"),
    ("slurm", "99;cluster1\n", "99", "99", "99_2"),
])
def test_array_ids_as_each_scheduler_prints_and_names_them(scheduler, printed, number, array_id, element_2):
    assert commands.parse_submitted(scheduler, printed) == (number, array_id)
    assert commands.element_id(scheduler, array_id, 2) == element_2
    with pytest.raises(ValueError, match="printed no job id"):
        commands.parse_submitted(scheduler, "error: denied\n")


# --- the element's script ------------------------------------------------------------------------

def array_folder(tmp_path: Path, scheduler: str, body: str, setup: list[str] | None = None) -> Path:
    folder = tmp_path / "array"
    for sub in ("elements", "exit"):
        (folder / sub).mkdir(parents=True)
    (folder / "elements" / "2.sh").write_text(body)
    script = folder / "array.sh"
    script.write_text(wrapper.wrapper_text(scheduler, "pr_x", 3, folder, tmp_path, setup or [], None,
                                           wrapper.scratch_expression(str(tmp_path / "scratch"))))
    script.chmod(0o755)
    return script


def test_setup_lines_stay_inert_words_and_bad_lines_name_the_line(tmp_path):
    setup = tmp_path / "setup.txt"
    setup.write_text('# set-up\nmodule load gcc/12.2  # compilers\nexport MARK="$HOME/x"\ntouch "$(touch pwned)"\n')
    assert wrapper.setup_commands(setup) == ["module load gcc/12.2", 'export MARK="${HOME}"/x', "touch '$(touch pwned)'"]
    setup.write_text("module load a; rm -rf ~\n")
    with pytest.raises(Exception, match=r"setup.txt: field '--pipe-rules-setup-file': line 1: 'module load a; rm -rf ~' "
                                        "is not one plain command"):
        wrapper.setup_commands(setup)


@pytest.mark.parametrize("scheduler, env", [
    ("sge", {"JOB_ID": "7", "SGE_TASK_ID": "2"}), ("pbs", {"PBS_JOBID": "8[2].srv", "PBS_ARRAY_INDEX": "2"}),
    ("lsf", {"LSB_JOBID": "9", "LSB_JOBINDEX": "2"}), ("slurm", {"SLURM_ARRAY_JOB_ID": "6", "SLURM_ARRAY_TASK_ID": "2"}),
    ("htcondor", {"PIPE_RULES_CLUSTER_ID": "5"}),
])
def test_element_runs_its_own_jobscript_with_its_scratch_and_leaves_its_exit_code(tmp_path, scheduler, env):
    body = 'echo "$PIPE_RULES_SCHEDULER_JOB_ID $TMPDIR" > "$0.ran"; touch "$TMPDIR/x"; exit 5\n'
    script = array_folder(tmp_path, scheduler, body.replace("$0", str(tmp_path / "element")),
                          setup=["export PIPE_RULES_MARK=set-up", "touch '$(touch pwned)'"])
    argv = [str(script), "1"] if scheduler == "htcondor" else [str(script)]  # $(Process) of element 2 is 1
    proc = subprocess.run(argv, env=dict(os.environ, **env), cwd=tmp_path, capture_output=True, text=True, timeout=30)
    element = {"sge": "7.2", "pbs": "8[2]", "lsf": "9[2]", "slurm": "6_2", "htcondor": "5.1"}[scheduler]
    assert proc.returncode == 5, proc.stderr
    assert (tmp_path / "array/exit/2").read_text() == "5\n"
    assert (tmp_path / "element.ran").read_text() == f"{element} {tmp_path}/scratch/pipe_rules.{element}\n"
    assert not (tmp_path / f"scratch/pipe_rules.{element}").exists()  # removed at exit
    assert not (tmp_path / "pwned").exists() and (tmp_path / "$(touch pwned)").exists()


def test_sigterm_to_an_element_reaches_its_job_and_records_143(tmp_path):
    script = array_folder(tmp_path, "sge", f"trap 'echo term > {tmp_path}/got; exit 143' TERM\nsleep 60 & wait\n")
    proc = subprocess.Popen([str(script)], env=dict(os.environ, JOB_ID="7", SGE_TASK_ID="2"), cwd=tmp_path)
    wait_until(lambda: any((tmp_path / "scratch").glob("pipe_rules.*")), timeout=30, what="the element started")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # what qdel / scancel / bkill / condor_rm / a walltime send
    assert proc.wait(timeout=30) == 143
    assert (tmp_path / "array/exit/2").read_text() == "143\n" and (tmp_path / "got").read_text() == "term\n"


# --- status: one listing per round; exit file, listing, accounting, grace --------------------------

def test_sge_listing_of_array_tasks_and_their_accounting():
    assert status.parse_sge_xml((FIXTURES / "sge_qstat_array.xml").read_text()) == {
        ("15", 1): "running", ("15", 2): "running", ("15", 3): "running", ("15", 4): "running"}  # 3,4 pending
    assert status.parse_qacct((FIXTURES / "sge_qacct_array.txt").read_text()) == {
        ("15", 1): "success", ("15", 2): "success", ("15", 3): "success", ("15", 4): "failed"}  # task 4 exit 3
    assert status.parse_sge_xml((FIXTURES / "sge_qstat.xml").read_text())[("4", 1)] == "running"  # a plain job
    assert status._indices("1-7:3") == [1, 4, 7]


def test_pbs_slurm_condor_and_lsf_listings():
    pbs = {"Jobs": {"7[].s": {"job_state": "B"}, "7[1].s": {"job_state": "F", "Exit_status": 0},
                    "7[2].s": {"job_state": "F", "Exit_status": 271}, "7[3].s": {"job_state": "R"},
                    "8.s": {"job_state": "Q"}}}
    assert status.parse_pbs_json(json.dumps(pbs)) == {("7", 1): "success", ("7", 2): "failed", ("7", 3): "running",
                                                      ("8", 1): "running"}
    assert status.parse_slurm("12_1|COMPLETED\n12_2|CANCELLED by 0\n12_3|RUNNING\n13|PENDING\n12.batch|X\n") == {
        ("12", 1): "success", ("12", 2): "failed", ("12", 3): "running", ("13", 1): "running"}
    assert status.parse_condor_json((FIXTURES / "condor_q.json").read_text())[("47", 2)] == "success"
    lsf = {"COMMAND": "bjobs", "RECORDS": [{"JOBID": "9", "JOBINDEX": "1", "STAT": "DONE"},
                                           {"JOBID": "9", "JOBINDEX": "2", "STAT": "EXIT", "EXIT_CODE": "143"},
                                           {"JOBID": "9", "JOBINDEX": "3", "STAT": "PEND"},
                                           {"ERROR": "Job <10> is not found"}]}
    assert status.parse_lsf_json(json.dumps(lsf)) == {("9", 1): "success", ("9", 2): "failed", ("9", 3): "running"}


def test_judge_takes_exit_files_then_the_listing_then_accounting_then_the_grace(tmp_path):
    elements = [status.Element("5", "5", i, tmp_path / f"exit-{i}") for i in range(1, 6)]
    (tmp_path / "exit-1").write_text("0\n")
    (tmp_path / "exit-2").write_text("143\n")
    asked = []

    def lister(scheduler, rest):
        asked.append(("list", [e.index for e in rest]))
        return {("5", 3): "running"}

    def accountant(scheduler, rest):
        asked.append(("account", [e.index for e in rest]))
        return {("5", 4): "success"}

    verdicts = status.judge("sge", elements, now=1000.0, grace=60, lister=lister, accountant=accountant)
    assert verdicts == {("5", 1): "success", ("5", 2): "failed", ("5", 3): "running", ("5", 4): "success",
                        ("5", 5): "running"}  # 5: vanished without a trace, within the grace
    assert asked == [("list", [3, 4, 5]), ("account", [4, 5])]  # one listing, one accounting per round
    assert status.judge("sge", elements[4:], now=1061.0, grace=60, lister=lister,
                        accountant=accountant) == {("5", 5): "failed"}


# --- whole campaigns through the profiles, on the fake schedulers ---------------------------------

@pytest.fixture
def fake(tmp_path, monkeypatch):
    log = tmp_path / "scheduler_calls.jsonl"
    env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}", FAKE_SCHEDULER_LOG=str(log), FAKE_RUN_JOBS="1")
    for name in ("PIPE_RULES_JOB_SETUP", "PIPE_RULES_CLUSTER_STATE"):
        env.pop(name, None)
    return env


def calls(env: dict, command: str | None = None) -> list[list[str]]:
    log = Path(env["FAKE_SCHEDULER_LOG"])
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [[e["cmd"], *e["args"]] for e in entries if command in (None, e["cmd"])]


def snakemake(profile: str, *extra: str) -> list[str]:
    return [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"), "--configfile", "config.yaml",
            "--profile", str(REPO / "profiles" / profile), "--seconds-between-status-checks", "1",
            "--latency-wait", "5", "--pipe-rules-status-grace", "5", *extra]


def element_ids(folder: Path, run: str) -> dict[str, set]:
    layout = RunLayout(folder / "runs/test" / run)
    return {read_result(layout.result(t, 0))["worker"]["scheduler_job_id"] for t in manifest_task_ids(layout)}


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["pbs", "htcondor", "lsf", "sge"])
def test_campaign_through_each_profile_is_one_array_per_run(tmp_path, fake, scheduler):
    runs = [{"name": "a", "family": "species_sp"}, {"name": "b", "family": "species_sp", "cores": 2,
                                                    "max_running_shards": 1}]
    write_config(tmp_path, 6, shards=3, runs=runs, options={"sleep_s": 0.3})
    proc = subprocess.run(snakemake(scheduler), cwd=tmp_path, env=fake, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    submits = calls(fake, SUBMIT[scheduler])
    assert len(submits) == 2  # one per run, never one per shard
    by_run = {}
    for argv in submits:
        text = Path(argv[-1]).read_text() if scheduler == "htcondor" else " ".join(argv)
        by_run["b" if "pr_run_shard_b" in text else "a"] = text
    expected = {  # run a: 3 elements of 1 core, no throttle; run b: 3 elements of 2 cores, one at a time
        "sge": ("-t 1-3 -pe smp 1 -l h_vmem=2000M", "-t 1-3 -tc 1 -pe smp 2 -l h_vmem=1000M"),
        "pbs": ("-J 1-3 -l select=1:ncpus=1:mem=2000mb", "-J 1-3 -W max_run_subjobs=1 -l select=1:ncpus=2:mem=2000mb"),
        "lsf": ("-J pr_run_shard_a[1-3] -n 1 -R span[hosts=1] rusage[mem=2000]",
                "-J pr_run_shard_b[1-3]%1 -n 2 -R span[hosts=1] rusage[mem=2000]"),
        "htcondor": ("request_cpus = 1\nrequest_memory = 2000M\n", "request_cpus = 2\nrequest_memory = 2000M\n"),
    }[scheduler]
    assert expected[0] in by_run["a"] and expected[1] in by_run["b"], by_run
    if scheduler == "htcondor":
        assert "max_materialize = 1\n" in by_run["b"] and "queue 3\n" in by_run["a"] and "queue 3\n" in by_run["b"]
    for run in ("a", "b"):
        layout = RunLayout(tmp_path / "runs/test" / run)
        assert [read_state(layout, t).status for t in manifest_task_ids(layout)] == [TaskState.COMPLETED] * 6
    a, b = element_ids(tmp_path, "a"), element_ids(tmp_path, "b")
    assert a and b and not a & b  # every result names an element of its own run's array
    assert calls(fake, CANCEL[scheduler]) == []  # nothing left to cancel after a normal end
    assert 1 <= len(calls(fake, QUERY[scheduler])) < 60  # one listing per round, not one per element


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["sge", "htcondor", "lsf"])
def test_ctrl_c_during_a_status_round_cancels_every_array_in_one_call(tmp_path, fake, scheduler):
    """Snakemake 9 passes no jobs to cancel while it polls them; the executor's own record still has them."""
    write_config(tmp_path, 4, shards=2, options={"sleep_s": 60}, lease_s=120, linger_s=1)
    fake[f"FAKE_{QUERY[scheduler].upper()}_SLEEP"] = "8"
    head = subprocess.Popen(snakemake(scheduler), cwd=tmp_path, env=fake, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    try:
        wait_until(lambda: calls(fake, QUERY[scheduler]), timeout=120, what="a status round", poll_s=0.2)
        time.sleep(1)  # inside the 8 s round
        head.send_signal(signal.SIGINT)
        output, _ = head.communicate(timeout=120)
    finally:
        if head.poll() is None:
            head.kill()
    (submit,) = calls(fake, SUBMIT[scheduler])
    array = {"sge": "4242", "htcondor": "4242", "lsf": "4242"}[scheduler]
    assert calls(fake, CANCEL[scheduler]) == [[CANCEL[scheduler], array]], output[-3000:]
    assert f"pipe_rules: cancelling 1 array(s) with unfinished elements: {CANCEL[scheduler]} {array}" in output
    jobs = Path(fake["FAKE_SCHEDULER_LOG"]).parent / "fake_jobs"
    wait_until(lambda: len(list(jobs.glob("4242.*.rc"))) == 2, timeout=30, what="both elements ended")
    assert sorted(p.read_text().strip() for p in jobs.glob("4242.*.rc")) == ["143", "143"]  # killed, not finished


def test_profiles_name_the_executor_and_their_scheduler_and_comment_every_key():
    for name in ("sge", "pbs", "htcondor", "lsf", "slurm"):
        path = REPO / "profiles" / name / "config.v8+.yaml"
        profile = yaml.safe_load(path.read_text())
        assert (profile["executor"], profile["pipe-rules-scheduler"]) == ("pipe-rules", name)
        assert profile["jobs"] >= 1000 and "groups" not in profile  # a run's shards arrive together; no groups
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if line and not line.startswith((" ", "#")):
                assert lines[index - 1].startswith(("#", "  ")), f"{name}: {line}"


@pytest.mark.slow
def test_snakemake_stopping_on_an_error_still_cancels_the_array(tmp_path, fake):
    """The status command vanished from PATH: Snakemake stops, and the running array is cancelled."""
    write_config(tmp_path, 4, shards=2, options={"sleep_s": 60}, lease_s=120, linger_s=1)
    only = tmp_path / "only_submit_and_cancel"
    only.mkdir()
    for name in ("condor_submit", "condor_rm"):
        (only / name).symlink_to(FAKES / "fake_command.py")
    fake["PATH"] = f"{only}:{os.path.dirname(PYTHON)}:/usr/bin:/bin"  # no condor_q anywhere
    proc = subprocess.run(snakemake("htcondor"), cwd=tmp_path, env=fake, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "condor_q not found on PATH" in proc.stdout + proc.stderr
    assert calls(fake, "condor_rm") == [["condor_rm", "4242"]]  # the whole array, once


def test_a_status_round_before_any_submission_never_touches_the_rate_limiter():
    """The base class starts its status thread before it creates status_rate_limiter; on a loaded
    machine the first (empty) round came first, its AttributeError killed the thread and Snakemake
    waited for ever. An empty round must return without asking anything."""
    import asyncio

    from pipe_rules.schedulers.executor import Executor

    half_made = Executor.__new__(Executor)  # as the status thread sees it: no status_rate_limiter yet
    assert not hasattr(half_made, "status_rate_limiter")

    async def one_round():
        return [info async for info in half_made.check_active_jobs([])]

    assert asyncio.run(one_round()) == []
