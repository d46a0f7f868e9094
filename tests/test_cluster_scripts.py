"""scripts/cluster/{submit,status,cancel}.py and profiles/{sge,pbs,htcondor}.

Fake scheduler commands (tests/fake_schedulers/, on PATH for these tests only) log every call, so
the tests can count queries: one batched qstat/condor_q per status round, one qdel per cancel.
Their outputs are captured real formats (SGE from the Grid Engine 8.1.9 of start_sge.sh; PBS Pro
and HTCondor written after their documented JSON). The last test runs a real Grid Engine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, REPO, write_config

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state

SCRIPTS = REPO / "scripts" / "cluster"
FAKES = REPO / "tests" / "fake_schedulers"
FIXTURES = FAKES / "fixtures"
sys.path.insert(0, str(SCRIPTS))
import cluster_common
import status as status_module
import submit as submit_module

PROPERTIES = {"type": "group", "groupid": "shards_main", "local": False,
              "input": ["runs/test/main/staged.json"], "output": ["runs/test/main/shards/shard-000.json"],
              "threads": 3, "resources": {"slurm_partition": "", "slurm_account": "", "mem_mb": 6000,
                                          "mem_mib": 5722, "runtime": 90, "mem": "6 GB"},
              "jobid": "474920b3-b41e-5769-9941-aba02ef30bb9"}
SNAKEMAKE_LINE = ("cd /work && /venv/bin/python3 -m snakemake --snakefile '/w/Snakefile' --target-jobs "
                  "'run_shard:run=main,shard=shard-000' --cores 'all' --mode 'remote' && exit 0 || exit 1")


def jobscript(folder: Path, body: str = SNAKEMAKE_LINE, properties: dict | None = None) -> Path:
    """A jobscript as cluster-generic writes it (jobscript.sh template of the executor interface)."""
    path = folder / "snakejob.shards_main_run_shard.474920b3.sh"
    path.write_text(f"#!/bin/sh\n# properties = {json.dumps(properties or PROPERTIES)}\n{body}\n")
    return path


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Environment with the fake scheduler commands first on PATH and a private state folder."""
    log = tmp_path / "scheduler_calls.jsonl"
    env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}", FAKE_SCHEDULER_LOG=str(log),
               PIPE_RULES_CLUSTER_STATE=str(tmp_path / "state"))
    for name in ("PIPE_RULES_JOB_SETUP", "PIPE_RULES_SCHEDULER", "PIPE_RULES_STATUS_TTL", "PIPE_RULES_STATUS_GRACE"):
        env.pop(name, None)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIPE_RULES_CLUSTER_STATE", str(tmp_path / "state"))
    return env


def calls(env: dict, command: str | None = None) -> list[list[str]]:
    log = Path(env["FAKE_SCHEDULER_LOG"])
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [[e["cmd"], *e["args"]] for e in entries if command in (None, e["cmd"])]


def run_script(name: str, *args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / name), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def submitted(tmp_path: Path, scheduler: str, env: dict, *options: str) -> tuple[str, dict]:
    proc = run_script("submit.py", scheduler, *options, str(jobscript(tmp_path)), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "state/jobs/active").glob("*.json")]
    return proc.stdout, record


# --- submission: exact scheduler commands, wrapper and submit description ----------------------

def test_sge_group_job_is_one_qsub_with_per_slot_memory_and_walltime(tmp_path, fake):
    stdout, record = submitted(tmp_path, "sge", fake)
    assert stdout == "4242\n"  # only the job id: Snakemake takes the first line
    token, logs = record["token"], tmp_path / "logs/cluster"
    assert calls(fake) == [[
        "qsub", "-terse", "-cwd", "-V", "-S", "/bin/bash", "-N", "pr_shards_main", "-pe", "smp", "3",
        "-l", "h_vmem=2000M", "-l", "h_rt=01:30:00",
        "-o", f"{logs}/pr_shards_main.{token}.out", "-e", f"{logs}/pr_shards_main.{token}.err",
        record["wrapper"]]]
    assert record == {"scheduler": "sge", "number": "4242", "job_id": "4242", "token": token,
                      "name": "pr_shards_main", "submitted": record["submitted"],
                      "exit_file": f"{tmp_path}/state/exit/{token}", "wrapper": f"{tmp_path}/state/scripts/{token}.sh",
                      "final": None, "missing_since": None}


def test_pbs_group_job_is_one_qsub_with_select_mem_and_walltime(tmp_path, fake):
    stdout, record = submitted(tmp_path, "pbs", fake, "--queue", "short", "--account", "chem-01")
    assert stdout == "4242.fakepbs\n"
    token, logs = record["token"], tmp_path / "logs/cluster"
    assert calls(fake) == [[
        "qsub", "-V", "-S", "/bin/bash", "-N", "pr_shards_main", "-l", "select=1:ncpus=3:mem=6000mb",
        "-l", "walltime=01:30:00", "-A", "chem-01", "-q", "short",
        "-o", f"{logs}/pr_shards_main.{token}.out", "-e", f"{logs}/pr_shards_main.{token}.err",
        record["wrapper"]]]
    assert (record["number"], record["job_id"]) == ("4242", "4242.fakepbs")


def test_htcondor_submit_description_is_exact(tmp_path, fake):
    stdout, record = submitted(tmp_path, "htcondor", fake, "--extra", 'requirements = (Arch == "X86_64"); +Project = "chem"')
    assert stdout == "4242\n"
    token, logs, state = record["token"], tmp_path / "logs/cluster", tmp_path / "state"
    sub = state / "scripts" / f"{token}.sub"
    assert calls(fake) == [["condor_submit", "-terse", str(sub)]]
    assert sub.read_text() == f"""# HTCondor job pr_shards_main, written by scripts/cluster/submit.py
universe = vanilla
executable = {state}/scripts/{token}.sh
initialdir = {tmp_path}
getenv = true
should_transfer_files = NO
request_cpus = 3
request_memory = 6000M
periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > 5400)
batch_name = pr_shards_main
output = {logs}/pr_shards_main.{token}.out
error = {logs}/pr_shards_main.{token}.err
log = {state}/condor_events.log
environment = "PIPE_RULES_CONDOR_JOB_ID=$(ClusterId).$(ProcId) CLUSTER_ID=$(ClusterId)"
requirements = (Arch == "X86_64")
+Project = "chem"
queue 1
"""
    assert not os.access(sub, os.X_OK) and os.access(state / "scripts" / f"{token}.sh", os.X_OK)


def test_single_job_name_partition_and_account_from_the_rule_resources(tmp_path, fake):
    properties = {"type": "single", "rule": "run_shard", "wildcards": {"run": "conformers", "shard": "shard-002"},
                  "threads": 1, "resources": {"slurm_partition": "long", "slurm_account": "grp7", "mem_mb": 2000,
                                              "runtime": 30}, "jobid": 7}
    script = jobscript(tmp_path, properties=properties)
    proc = run_script("submit.py", "sge", "--no-export-env", "--pe", "mpi", "--mem-resource", "mem_free",
                      "--extra", "-P chemistry -l scratch=5G", "--dry-run", str(script), env=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = shlex.split(proc.stdout)
    assert argv[:16] == ["qsub", "-terse", "-cwd", "-S", "/bin/bash", "-N", "pr_run_shard_conformers_shard-002",
                         "-pe", "mpi", "1", "-l", "mem_free=2000M", "-l", "h_rt=00:30:00", "-A", "grp7"]
    assert argv[16:18] == ["-q", "long"] and argv[-5:-1] == ["-P", "chemistry", "-l", "scratch=5G"]
    assert calls(fake) == []  # --dry-run submits nothing


def test_sge_wrapper_content_is_exact(tmp_path, fake):
    setup = tmp_path / "setup.txt"
    setup.write_text("# campaign set-up\nsource /etc/profile.d/modules.sh\nmodule load gcc/12.2  # compilers\n"
                     'conda activate "$(rm -rf ~)"\n')
    _, record = submitted(tmp_path, "sge", fake, "--setup-file", str(setup), "--scratch-base", "$SCRATCH/pr")
    exit_file = record["exit_file"]
    lines = [line for line in Path(record["wrapper"]).read_text().splitlines()]
    failing = "|| { echo 'pipe_rules: set-up command failed: %s' >&2; pipe_rules_exit 1; }"
    assert lines == [
        "#!/bin/bash",
        "# sge job pr_shards_main, written by scripts/cluster/submit.py. Order: set-up commands,",
        "# per-job scratch folder as TMPDIR, Snakemake's jobscript (the Python interpreter starts only",
        "# there, in a subshell), then the exit-code file that scripts/cluster/status.py reads.",
        "pipe_rules_exit() {",
        f"  printf '%s\\n' \"$1\" > {exit_file}.$$ && mv -f {exit_file}.$$ {exit_file}",
        '  exit "$1"',
        "}",
        f"cd {tmp_path} || pipe_rules_exit 1",
        f"# set-up commands from {setup}",
        "source /etc/profile.d/modules.sh " + failing % "source /etc/profile.d/modules.sh",
        "module load gcc/12.2 " + failing % "module load gcc/12.2",
        "conda activate '$(rm -rf ~)' || { echo 'pipe_rules: set-up command failed: conda activate '\"'\"'$(rm -rf ~)'\"'\"'' >&2; pipe_rules_exit 1; }",
        "job_id=${JOB_ID:-$$}",
        "case ${SGE_TASK_ID:-undefined} in undefined) ;; *) job_id=$job_id.$SGE_TASK_ID ;; esac",
        'export TMPDIR="${SCRATCH}"/pr/pipe_rules."$job_id"',
        'mkdir -p -- "$TMPDIR" || pipe_rules_exit 1',
        "trap 'rm -rf -- \"$TMPDIR\"' EXIT",
        'echo "pipe_rules: job $job_id on $(hostname), scratch $TMPDIR" >&2',
        "(",
        f"# properties = {json.dumps(PROPERTIES)}",
        SNAKEMAKE_LINE,
        ")",
        "pipe_rules_exit $?",
    ]


@pytest.mark.parametrize("word, rendered", [
    ("gcc/12.2", "gcc/12.2"),
    ("$(rm -rf ~)", "'$(rm -rf ~)'"),
    ("`id`", "'`id`'"),
    ("a;b|c&&d>e", "'a;b|c&&d>e'"),
    ("${HOME:-$(id)}", "'${HOME:-$(id)}'"),
    ("PATH=$HOME/bin:${PATH}", 'PATH="${HOME}"/bin:"${PATH}"'),
    ("~/miniconda3/etc/profile.d/conda.sh", "~/miniconda3/etc/profile.d/conda.sh"),
    ("~root", "'~root'"),
    ("", "''"),
])
def test_setup_words_expand_only_variables_and_home(word, rendered):
    assert submit_module.render_word(word) == rendered


@pytest.mark.parametrize("line", ["module load a && rm -rf ~", "echo hi > /etc/motd", "$(rm -rf ~)",
                                  "conda activate 'unclosed"])
def test_setup_lines_that_are_not_one_plain_command_are_refused(tmp_path, fake, line):
    setup = tmp_path / "setup.txt"
    setup.write_text(f"module load gcc\n{line}\n")
    proc = run_script("submit.py", "sge", "--setup-file", str(setup), str(jobscript(tmp_path)), env=fake, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"submit.py: error: {setup}:2: ") and len(proc.stderr.splitlines()) == 1
    assert calls(fake) == []


def test_missing_setup_file_names_the_flag_and_the_fix(tmp_path, fake):
    fake["PIPE_RULES_JOB_SETUP"] = str(tmp_path / "nope.txt")
    proc = run_script("submit.py", "pbs", str(jobscript(tmp_path)), env=fake, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (f"submit.py: error: --setup-file {tmp_path}/nope.txt: No such file or directory; create it "
                           "(one command per line) or drop the flag / unset $PIPE_RULES_JOB_SETUP\n")


def test_failed_qsub_is_reported_with_its_message(tmp_path, fake):
    fake.update(FAKE_QSUB_RC="1", FAKE_QSUB_OUTPUT=str(FIXTURES / "sge_qacct_failed.txt"))
    proc = run_script("submit.py", "sge", str(jobscript(tmp_path)), env=fake, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("submit.py: error: qsub exited 1: ")
    assert not (tmp_path / "state/jobs/active").exists()


def test_generated_job_runs_setup_before_python_in_its_own_scratch_and_quoting_is_inert(tmp_path, fake):
    """Run the generated wrapper with bash, as Grid Engine would (JOB_ID set)."""
    setup = tmp_path / "setup.txt"
    setup.write_text('export GREETING="hello world"\ntouch "$(touch pwned)" \'`touch pwned2`\'\n')
    probe = ("python3 -c 'import json, os; json.dump({\"greeting\": os.environ.get(\"GREETING\"), "
             "\"tmpdir\": os.environ[\"TMPDIR\"], \"exists\": os.path.isdir(os.environ[\"TMPDIR\"])}, "
             "open(\"seen.json\", \"w\"))' && exit 0 || exit 1")
    script = jobscript(tmp_path, body=probe)
    proc = run_script("submit.py", "sge", "--setup-file", str(setup), "--scratch-base", str(tmp_path / "scratch"),
                      str(script), env=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "state/jobs/active").glob("*.json")]
    (tmp_path / "scratch").mkdir()
    job = subprocess.run(["bash", record["wrapper"]], cwd="/", capture_output=True, text=True,
                         env=dict(fake, JOB_ID="77", SGE_TASK_ID="undefined"))
    assert job.returncode == 0, job.stderr
    assert json.loads((tmp_path / "seen.json").read_text()) == {
        "greeting": "hello world", "tmpdir": f"{tmp_path}/scratch/pipe_rules.77", "exists": True}
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert (tmp_path / "$(touch pwned)").exists() and (tmp_path / "`touch pwned2`").exists()
    assert not (tmp_path / "scratch/pipe_rules.77").exists()  # removed at the end of the job
    assert Path(record["exit_file"]).read_text() == "0\n"
    assert "pipe_rules: job 77 on " in job.stderr


@pytest.mark.parametrize("scheduler, env, expected", [
    ("sge", {"JOB_ID": "55", "SGE_TASK_ID": "undefined"}, "55"),
    ("sge", {"JOB_ID": "55", "SGE_TASK_ID": "3"}, "55.3"),
    ("pbs", {"PBS_JOBID": "123.pbs01.example.org"}, "123"),
    ("pbs", {"PBS_JOBID": "123[4].pbs01", "PBS_ARRAY_INDEX": "4"}, "123.4"),
    ("htcondor", {"PIPE_RULES_CONDOR_JOB_ID": "42.0"}, "42.0"),
])
def test_scratch_folder_is_named_after_the_job_without_brackets_or_server(scheduler, env, expected):
    script = "\n".join(submit_module._JOB_ID_LINES[scheduler]) + '\nprintf %s "$job_id"'
    clean = {k: v for k, v in os.environ.items() if k not in ("JOB_ID", "SGE_TASK_ID", "PBS_JOBID", "PBS_ARRAY_INDEX")}
    assert subprocess.run(["bash", "-c", script], env=dict(clean, **env), capture_output=True,
                          text=True).stdout == expected


# --- status: parsing real formats --------------------------------------------------------------

def test_sge_qstat_xml_listing():
    verdicts = status_module.parse_sge_xml((FIXTURES / "sge_qstat.xml").read_text())
    assert verdicts == {"2": "running", "6": "running", "4": "running", "5": "running", "7": "failed"}


@pytest.mark.parametrize("fixture, verdict", [("sge_qacct_success.txt", "success"), ("sge_qacct_failed.txt", "failed"),
                                              ("sge_qacct_killed.txt", "failed")])
def test_sge_qacct(fixture, verdict):
    assert status_module.parse_qacct((FIXTURES / fixture).read_text()) == verdict


def test_pbs_json_listing_keeps_finished_jobs_and_array_ids():
    verdicts = status_module.parse_pbs_json((FIXTURES / "pbs_qstat.json").read_text())
    assert verdicts == {"1001": "running", "1002": "running", "1003": "success", "1004": "failed",
                        "1005": "running", "1006": "running", "1007": "failed"}
    assert status_module.parse_pbs_json('{"timestamp":1,"pbs_version":"2024.1","pbs_server":"s"}') == {}


def test_pbs_plain_text_listing_is_the_fallback_for_broken_json():
    with pytest.raises(ValueError):
        status_module.parse_pbs_json((FIXTURES / "pbs_qstat_broken.json").read_text())
    verdicts = status_module.parse_pbs_text((FIXTURES / "pbs_qstat_f.txt").read_text())
    assert verdicts == {"1001": "running", "1003": "success", "1004": "failed"}


def test_condor_json_listing_and_history():
    assert status_module.parse_condor_json((FIXTURES / "condor_q.json").read_text()) == {
        "42": "running", "43": "running", "44": "failed", "45": "success", "46": "failed", "47": "running"}
    assert status_module.parse_condor_json((FIXTURES / "condor_history.json").read_text()) == {
        "50": "success", "51": "failed", "52": "failed"}
    assert status_module.parse_condor_json("") == {}  # condor_q -json prints nothing for no jobs


@pytest.mark.parametrize("raw, number", [("123", "123"), ("123.pbs01", "123"), ("123[].pbs01", "123"),
                                         ("123[7].pbs01.example.org", "123"), ("7.1-3:1", "7"),
                                         ("42.0 - 42.0", "42"), ("1 job(s) submitted to cluster 42.", "42")])
def test_job_numbers(raw, number):
    assert cluster_common.job_number(raw) == number


# --- status: one query per round, verdicts for vanished jobs ----------------------------------

def add_records(scheduler: str, numbers, tmp_path: Path, **fields) -> None:
    for number in numbers:
        job_id = f"{number}.pbs01" if scheduler == "pbs" else str(number)
        cluster_common.save_record({"scheduler": scheduler, "number": str(number), "job_id": job_id,
                                    "token": f"t{number}", "submitted": time.time() - 5, "final": None,
                                    "missing_since": None, "exit_file": str(tmp_path / f"exit-{number}"), **fields})


def sge_listing(tmp_path: Path, numbers, state: str = "r") -> str:
    rows = "".join(f'    <job_list state="running">\n      <JB_job_number>{n}</JB_job_number>\n      '
                   f"<JB_name>pr_shards_r{n}</JB_name>\n      <state>{state}</state>\n    </job_list>\n" for n in numbers)
    path = tmp_path / "listing.xml"
    path.write_text(f"<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n{rows}  </queue_info>\n"
                    "  <job_info>\n  </job_info>\n</job_info>\n")
    return str(path)


def test_fifty_status_calls_make_one_qstat_call(tmp_path, fake):
    numbers = range(100, 150)
    add_records("sge", numbers, tmp_path)
    fake.update(FAKE_QSTAT_OUTPUT=sge_listing(tmp_path, numbers), PIPE_RULES_STATUS_TTL="120")  # one round
    answers = [run_script("status.py", str(n), env=fake, cwd=tmp_path) for n in numbers]
    assert [a.stdout for a in answers] == ["running\n"] * 50 and all(a.returncode == 0 for a in answers)
    assert calls(fake) == [["qstat", "-xml", "-u", os.environ.get("USER") or __import__("getpass").getuser()]]


def test_concurrent_status_calls_wait_for_one_query(tmp_path, fake):
    numbers = range(100, 120)
    add_records("pbs", numbers, tmp_path)
    listing = tmp_path / "listing.json"
    listing.write_text(json.dumps({"timestamp": 1, "pbs_server": "pbs01",
                                   "Jobs": {f"{n}.pbs01": {"job_state": "R"} for n in numbers}}))
    fake.update(FAKE_QSTAT_OUTPUT=str(listing), FAKE_QSTAT_SLEEP="1")
    procs = [subprocess.Popen([str(SCRIPTS / "status.py"), f"{n}.pbs01"], env=fake, cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True) for n in numbers]
    assert [p.communicate(timeout=60)[0] for p in procs] == ["running\n"] * 20
    (query,) = calls(fake)  # one batched query naming every active job
    assert query == ["qstat", "-x", "-f", "-F", "json", *[f"{n}.pbs01" for n in numbers]]


def test_an_expired_cache_is_queried_again(tmp_path, fake):
    add_records("htcondor", [42], tmp_path)
    fake.update(FAKE_CONDOR_Q_OUTPUT=str(FIXTURES / "condor_q.json"), PIPE_RULES_STATUS_TTL="0")
    for _ in range(3):
        assert run_script("status.py", "42", env=fake, cwd=tmp_path).stdout == "running\n"
    assert calls(fake) == [["condor_q", "-json", "-attributes", status_module.CONDOR_ATTRIBUTES]] * 3


def test_vanished_jobs_are_judged_by_exit_file_then_accounting(tmp_path, fake):
    add_records("sge", [8, 9, 10, 11], tmp_path)
    (tmp_path / "exit-8").write_text("0\n")
    (tmp_path / "exit-9").write_text("143\n")
    fake.update(FAKE_QSTAT_OUTPUT=sge_listing(tmp_path, []), FAKE_QACCT_OUTPUT=str(FIXTURES / "sge_qacct_killed.txt"),
                PIPE_RULES_STATUS_TTL="0")
    answer = {n: run_script("status.py", n, env=fake, cwd=tmp_path).stdout.strip() for n in ("8", "9", "10")}
    assert answer == {"8": "success", "9": "failed", "10": "running"}  # 10: within the grace period
    assert calls(fake, "qacct") == []
    fake["PIPE_RULES_STATUS_GRACE"] = "0"
    assert run_script("status.py", "10", env=fake, cwd=tmp_path).stdout == "failed\n"
    assert calls(fake, "qacct") == [["qacct", "-j", "10"], ["qacct", "-j", "11"]]  # every overdue job
    before = len(calls(fake))
    for number, verdict in (("8", "success"), ("9", "failed"), ("10", "failed"), ("11", "failed")):
        assert run_script("status.py", number, env=fake, cwd=tmp_path).stdout == f"{verdict}\n"
    assert len(calls(fake)) == before  # final verdicts are stored: no more queries for them


def test_vanished_condor_jobs_share_one_history_query(tmp_path, fake):
    add_records("htcondor", [50, 51, 42], tmp_path, missing_since=time.time() - 3600)
    fake.update(FAKE_CONDOR_Q_OUTPUT=str(FIXTURES / "condor_q.json"),
                FAKE_CONDOR_HISTORY_OUTPUT=str(FIXTURES / "condor_history.json"))
    assert [run_script("status.py", n, env=fake, cwd=tmp_path).stdout for n in ("50", "51", "42")] == [
        "success\n", "failed\n", "running\n"]
    assert calls(fake, "condor_history") == [[
        "condor_history", "-json", "-attributes", status_module.CONDOR_ATTRIBUTES, "-match", "2",
        "-constraint", "ClusterId == 50 || ClusterId == 51"]]


def test_pbs_finished_jobs_stay_listed_and_broken_json_falls_back_to_text(tmp_path, fake):
    add_records("pbs", [1001, 1003, 1004], tmp_path)
    fake["FAKE_QSTAT_OUTPUT"] = str(FIXTURES / "pbs_qstat.json")
    assert [run_script("status.py", f"{n}.pbs01", env=fake, cwd=tmp_path).stdout for n in (1001, 1003, 1004)] == [
        "running\n", "success\n", "failed\n"]
    assert len(calls(fake, "qstat")) == 1


def test_unreachable_scheduler_reports_running_and_a_missing_command_fails(tmp_path, fake):
    add_records("sge", [5], tmp_path)
    fake.update(FAKE_QSTAT_RC="1", FAKE_QSTAT_OUTPUT="/dev/null")
    proc = run_script("status.py", "5", env=fake, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, "running\n")
    assert proc.stderr.startswith("status.py: warning: qstat exited 1")
    fake["PATH"] = "/nonexistent"
    proc = subprocess.run([sys.executable, str(SCRIPTS / "status.py"), "htcondor", "77"], env=fake, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("status.py: error: condor_q not found on PATH")


def test_records_are_found_active_or_done_for_any_scheduler(tmp_path, fake):
    add_records("sge", [5], tmp_path, final="success")
    add_records("pbs", [6], tmp_path, final="failed")
    add_records("htcondor", [5, 7], tmp_path)
    assert cluster_common.find_record("6")["final"] == "failed"  # done/, second scheduler
    assert cluster_common.find_record("7")["scheduler"] == "htcondor"
    assert cluster_common.find_record("5", "sge")["final"] == "success"
    assert cluster_common.find_record("5", "htcondor")["final"] is None
    assert run_script("status.py", "sge", "5", env=fake, cwd=tmp_path).stdout == "success\n"
    assert calls(fake) == []  # a final verdict needs no query


def test_status_of_an_unknown_job_without_scheduler_names_the_fix(tmp_path, fake):
    proc = run_script("status.py", "999", env=fake, cwd=tmp_path)
    assert proc.returncode == 2 and "pass the scheduler first" in proc.stderr and "PIPE_RULES_SCHEDULER" in proc.stderr


# --- cancel: one call per scheduler --------------------------------------------------------------

def test_cancel_sends_all_ids_in_one_call_per_scheduler(tmp_path, fake):
    add_records("sge", [11, 12, 14], tmp_path)
    add_records("htcondor", [13], tmp_path)
    proc = run_script("cancel.py", "11", "12", "13", "14", env=fake, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert calls(fake) == [["qdel", "11", "12", "14"], ["condor_rm", "13"]]
    assert run_script("cancel.py", "pbs", "7.pbs01", "8[].pbs01", env=fake, cwd=tmp_path).returncode == 0
    assert calls(fake)[-1] == ["qdel", "7.pbs01", "8[].pbs01"]
    proc = run_script("cancel.py", "99", env=fake, cwd=tmp_path)
    assert proc.returncode == 2 and "PIPE_RULES_SCHEDULER" in proc.stderr
    assert run_script("cancel.py", env=fake, cwd=tmp_path).stderr == (
        "cancel.py: error: usage: cancel.py [sge|pbs|htcondor] JOBID...\n")


# --- profiles -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sge", "pbs", "htcondor"])
def test_profiles_group_each_run_and_comment_every_key(name):
    path = REPO / "profiles" / name / "config.v8+.yaml"
    profile = yaml.safe_load(path.read_text())
    assert profile["executor"] == "cluster-generic"
    assert profile["groups"] == {"run_shard": "shards_{run}"}
    assert profile["group-components"] == {"shards_{run}": 100000}
    assert profile["keep-incomplete"] is True
    assert profile["cluster-generic-submit-cmd"].endswith(f"scripts/cluster/submit.py {name}")
    for key in ("cluster-generic-status-cmd", "cluster-generic-cancel-cmd"):  # resolved against the profile folder
        assert (path.parent / profile[key]).is_file()
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            assert lines[index - 1].startswith("#") or lines[index - 1].startswith("  "), f"{name}: {line}"


def campaign_states(folder: Path, runs: list[str]) -> dict[str, list]:
    states = {}
    for run in runs:
        layout = RunLayout(folder / "runs/test" / run)
        states[run] = [read_state(layout, t) for t in manifest_task_ids(layout)]
    return states


def job_ids_per_run(folder: Path, runs: list[str]) -> dict[str, set]:
    ids = {}
    for run in runs:
        layout = RunLayout(folder / "runs/test" / run)
        ids[run] = {read_result(layout.result(t, 0))["worker"]["scheduler_job_id"] for t in manifest_task_ids(layout)}
    return ids


def snakemake(folder: Path, profile: str, *extra: str) -> list[str]:
    return [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile"), "--configfile",
            "config.yaml", "--profile", str(REPO / "profiles" / profile), "--seconds-between-status-checks", "1",
            "--latency-wait", "5", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["sge", "pbs", "htcondor"])
def test_campaign_through_profile_with_a_simulated_scheduler_is_one_submission_per_run(tmp_path, fake, scheduler):
    """The fake qsub/condor_submit run the generated job locally; status and cancel are the real scripts."""
    runs = ["a", "b"]
    write_config(tmp_path, 4, shards=2, runs=[{"name": r, "family": "species_sp"} for r in runs])
    fake.update(FAKE_RUN_JOBS="1", PIPE_RULES_STATUS_TTL="0.5")
    del fake["PIPE_RULES_CLUSTER_STATE"]  # the default folder, .snakemake/pipe_rules_cluster
    proc = subprocess.run(snakemake(tmp_path, scheduler), cwd=tmp_path, env=fake, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    submits = calls(fake, "condor_submit" if scheduler == "htcondor" else "qsub")
    assert len(submits) == 2  # one per run, never one per shard
    if scheduler != "htcondor":
        assert sorted(s[s.index("-N") + 1] for s in submits) == ["pr_shards_a", "pr_shards_b"]
    for run, states in campaign_states(tmp_path, runs).items():
        assert [s.status for s in states] == [TaskState.COMPLETED] * 4, run
    ids = job_ids_per_run(tmp_path, runs)
    assert all(len(found) == 1 for found in ids.values()) and ids["a"] != ids["b"], ids  # one allocation per run
    assert len(calls(fake, "condor_q" if scheduler == "htcondor" else "qstat")) >= 1
    assert calls(fake, "condor_rm" if scheduler == "htcondor" else "qdel") == []  # the sidecar had nothing to do


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["sge", "htcondor"])
def test_ctrl_c_during_a_status_round_still_cancels_through_the_sidecar(tmp_path, fake, scheduler):
    """Snakemake 9 gives its cancel command no jobs while it polls them; the sidecar cancels them then."""
    write_config(tmp_path, 4, shards=2, options={"sleep_s": 60}, lease_s=120, linger_s=1)
    query = "condor_q" if scheduler == "htcondor" else "qstat"
    fake.update(FAKE_RUN_JOBS="1", PIPE_RULES_STATUS_TTL="0", **{f"FAKE_{query.upper()}_SLEEP": "8"})
    del fake["PIPE_RULES_CLUSTER_STATE"]
    head = subprocess.Popen(snakemake(tmp_path, scheduler), cwd=tmp_path, env=fake, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not calls(fake, query) and time.time() < deadline:  # a status round has begun: it lasts 8 s
            time.sleep(0.2)
        assert calls(fake, query), "no status round within 120 s"
        time.sleep(1)
        head.send_signal(signal.SIGINT)
        output, _ = head.communicate(timeout=120)
    finally:
        if head.poll() is None:
            head.kill()
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / ".snakemake/pipe_rules_cluster/jobs").glob("*/*.json")]
    cancel = "condor_rm" if scheduler == "htcondor" else "qdel"
    assert calls(fake, cancel) == [[cancel, record["job_id"]]], output[-3000:]  # once, by the sidecar
    assert f"sidecar.py: Snakemake stopped with 1 {scheduler} job(s) unfinished: cancelling {record['job_id']}" in output
    assert record["final"] == "failed" and record["cancelled"] is True


# --- live: a real Grid Engine -----------------------------------------------------------------------

def sge_environment() -> dict:
    env = dict(os.environ)
    for line in (REPO / "tests/cluster/sge.env").read_text().splitlines() if (REPO / "tests/cluster/sge.env").exists() else []:
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env.setdefault(key, value)
    env.setdefault("SGE_ROOT", "/var/lib/gridengine")
    env.setdefault("SGE_CELL", "default")
    return env


@pytest.fixture(scope="module")
def sge():
    """A usable Grid Engine queue all.q, started by tests/cluster/start_sge.sh if need be."""
    env, script = sge_environment(), REPO / "tests/cluster/start_sge.sh"
    reason = os.environ.get("PIPE_RULES_SGE_UNAVAILABLE")
    if reason is None and script.exists() and os.geteuid() == 0:
        proc = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=600)
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        reason = None if proc.returncode == 0 and last[0].startswith("sge ready") else last[0]
    elif reason is None and not script.exists():
        reason = "tests/cluster/start_sge.sh does not exist"
    elif reason is None:
        reason = "not root: start_sge.sh must run as root"
    ok = shutil.which("qconf") and subprocess.run(["qconf", "-sq", "all.q"], env=env, capture_output=True,
                                                  text=True).returncode == 0
    if reason is not None or not ok:
        print(f"SGE cannot start here: {reason}")
        pytest.skip(f"SGE cannot start here: {reason}")
    slots = subprocess.run(["qconf", "-sq", "all.q"], env=env, capture_output=True, text=True).stdout
    return env, int(next(line.split()[1] for line in slots.splitlines() if line.startswith("slots ")))


def counting_shims(folder: Path, env: dict) -> Path:
    """qsub/qdel that log their arguments, then run the real command: counts submissions exactly."""
    folder.mkdir()
    for command in ("qsub", "qdel"):
        real = shutil.which(command, path=env["PATH"])
        shim = folder / command
        shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {folder}/{command}.log\nexec {real} "$@"\n')
        shim.chmod(0o755)
    return folder


def shim_calls(folder: Path, command: str) -> list[str]:
    log = folder / f"{command}.log"
    return log.read_text().splitlines() if log.exists() else []


def our_sge_jobs(env: dict, names: set[str]) -> list[str]:
    out = subprocess.run(["qstat", "-xml", "-u", "*"], env=env, capture_output=True, text=True).stdout
    return [n for n, v in status_module.parse_sge_xml(out).items() if v and n in names]


@pytest.mark.sge
@pytest.mark.slow
def test_live_sge_campaign_is_one_qsub_per_run(tmp_path, sge):
    env, slots = sge
    shards = min(3, slots)  # a group job asks for shards x cores slots on ONE host
    runs = ["a", "b"]
    write_config(tmp_path, 6, shards=shards, runs=[{"name": r, "family": "species_sp"} for r in runs])
    (tmp_path / "setup.txt").write_text('export PIPE_RULES_MARK="set-up ran"\ntouch "$(touch pwned)"\n')
    bin_dir = counting_shims(tmp_path / "bin", env)
    env = dict(env, PATH=f"{bin_dir}:{env['PATH']}", PIPE_RULES_JOB_SETUP=str(tmp_path / "setup.txt"),
               PIPE_RULES_STATUS_TTL="1", PIPE_RULES_STATUS_GRACE="10")
    env.pop("PIPE_RULES_CLUSTER_STATE", None)
    started = time.time()
    proc = subprocess.run(snakemake(tmp_path, "sge"), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
        submissions = shim_calls(bin_dir, "qsub")
        assert len(submissions) == len(runs), submissions  # exactly one qsub per run
        assert sorted(s.split(" -N ")[1].split()[0] for s in submissions) == ["pr_shards_a", "pr_shards_b"]
        assert all(f"-pe smp {shards} -l h_vmem=2000M -l h_rt=01:00:00" in s for s in submissions)
        for run, states in campaign_states(tmp_path, runs).items():
            assert [s.status for s in states] == [TaskState.COMPLETED] * 6, run
        ids = job_ids_per_run(tmp_path, runs)
        assert all(len(found) == 1 for found in ids.values()) and ids["a"] != ids["b"], ids
        assert not (tmp_path / "pwned").exists() and (tmp_path / "$(touch pwned)").exists()
        logs = "".join(p.read_text() for p in (tmp_path / "logs/cluster").glob("*.err"))
        for (job_id,) in ids.values():  # scratch: Grid Engine's per-job folder (it sets TMP) / pipe_rules.<id>
            scratch = re.search(rf"pipe_rules: job {job_id} on \S+ scratch (\S+/pipe_rules\.{job_id})\n", logs)
            assert scratch and not Path(scratch.group(1)).exists(), logs  # removed when the job ended
        print(f"live SGE: {len(runs)} runs x {shards} shards, {len(submissions)} qsub, {time.time() - started:.1f} s")
    finally:
        leftovers = our_sge_jobs(env, {line.split()[0] for line in shim_calls(bin_dir, "qsub")})
        if leftovers:
            subprocess.run(["qdel", *leftovers], env=env, capture_output=True)


@pytest.mark.sge
@pytest.mark.slow
def test_live_sge_ctrl_c_cancels_with_one_qdel(tmp_path, sge):
    env, slots = sge
    write_config(tmp_path, 4, shards=min(2, slots), options={"sleep_s": 30}, lease_s=60, linger_s=1)
    bin_dir = counting_shims(tmp_path / "bin", env)
    env = dict(env, PATH=f"{bin_dir}:{env['PATH']}", PIPE_RULES_STATUS_TTL="1")
    env.pop("PIPE_RULES_CLUSTER_STATE", None)
    head = subprocess.Popen(snakemake(tmp_path, "sge"), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    job_ids: list[str] = []
    layout = RunLayout(tmp_path / "runs/test/main")
    while time.time() < deadline and not (job_ids and layout.manifest.exists()
                                          and any(read_state(layout, t).status is TaskState.RUNNING
                                                  for t in manifest_task_ids(layout))):
        time.sleep(0.5)
        records = (tmp_path / ".snakemake/pipe_rules_cluster/jobs/active").glob("sge-*.json")
        job_ids = [json.loads(p.read_text())["job_id"] for p in records]
    try:
        assert job_ids, "no shard job was running within 120 s"
        head.send_signal(signal.SIGINT)
        output, _ = head.communicate(timeout=120)
        assert shim_calls(bin_dir, "qdel") == [" ".join(job_ids)], output[-3000:]
        time.sleep(2)
        assert our_sge_jobs(env, set(job_ids)) == []
    finally:
        if head.poll() is None:
            head.kill()
        leftovers = our_sge_jobs(env, set(job_ids))
        if leftovers:
            subprocess.run(["qdel", *leftovers], env=env, capture_output=True)
