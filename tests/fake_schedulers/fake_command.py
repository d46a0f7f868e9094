#!/usr/bin/env python3
"""Stand-in for qsub/qstat/qacct/qdel/condor_* in tests/test_cluster_scripts.py (symlinked names).

Why: the status cache must be shown to run the scheduler query ONCE per round, and the submit
line must be checked exactly, without a real PBS or HTCondor. Every call appends
{"cmd", "args"} to $FAKE_SCHEDULER_LOG. Output: the file named by $FAKE_<CMD>_OUTPUT (CMD upper
case, e.g. FAKE_CONDOR_Q_OUTPUT), exit code $FAKE_<CMD>_RC, delay $FAKE_<CMD>_SLEEP seconds.
With $FAKE_RUN_JOBS=1 qsub/condor_submit really run the submitted script in the background (as
the scheduler would, with JOB_ID / PBS_JOBID / PIPE_RULES_CONDOR_JOB_ID set) and qstat/condor_q
list those jobs: running while their script runs, PBS `F` with Exit_status afterwards;
qdel/condor_rm end them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

NAME = Path(sys.argv[0]).name
ARGS = sys.argv[1:]
KEY = "FAKE_" + re.sub(r"[^A-Z0-9]", "_", NAME.upper())
LOG = Path(os.environ["FAKE_SCHEDULER_LOG"])
JOBS = LOG.parent / "fake_jobs"


def next_number() -> int:
    counter = LOG.parent / "fake_counter"
    number = int(counter.read_text()) + 1 if counter.exists() else 4242
    counter.write_text(str(number))
    return number


def option(flag: str) -> str:
    return ARGS[ARGS.index(flag) + 1]


def start(number: int, job_id: str, script: str, out: str, err: str, env: dict, cwd: str | None = None) -> None:
    """Run `script` detached; its exit code lands in fake_jobs/<number>.rc (the job's 'accounting')."""
    JOBS.mkdir(exist_ok=True)
    (JOBS / f"{number}.json").write_text(json.dumps({"id": job_id}))
    rc_file = JOBS / f"{number}.rc"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        job = subprocess.Popen(["bash", "-c", 'bash "$0"; echo $? > "$1"', script, str(rc_file)], stdout=stdout,
                               stderr=stderr, env=dict(os.environ, **env), cwd=cwd, start_new_session=True)
    (JOBS / f"{number}.pid").write_text(str(job.pid))


def kill(job_ids: list[str]) -> None:
    """qdel/condor_rm: end the jobs' process groups; their exit code is then 143, as after a kill."""
    for number, (job_id, code) in jobs().items():
        if code is None and (job_id in job_ids or number in job_ids):
            try:
                os.killpg(int((JOBS / f"{number}.pid").read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass


def jobs() -> dict:
    """number -> (job id, exit code or None while running)."""
    table = {}
    for path in sorted(JOBS.glob("*.json")) if JOBS.exists() else []:
        rc = path.with_suffix(".rc")
        code = rc.read_text().strip() if rc.exists() else ""
        table[path.stem] = (json.loads(path.read_text())["id"], int(code) if code else None)
    return table


def main() -> int:
    with open(LOG, "a") as log:
        log.write(json.dumps({"cmd": NAME, "args": ARGS}) + "\n")
    time.sleep(float(os.environ.get(KEY + "_SLEEP", "0")))
    run_jobs = os.environ.get("FAKE_RUN_JOBS") == "1"
    if os.environ.get(KEY + "_OUTPUT"):
        sys.stdout.write(Path(os.environ[KEY + "_OUTPUT"]).read_text())
    elif NAME == "qsub":
        number = next_number()
        sge = "-terse" in ARGS
        job_id = str(number) if sge else f"{number}.fakepbs"
        if run_jobs:
            env = {"JOB_ID": job_id, "SGE_TASK_ID": "undefined"} if sge else {"PBS_JOBID": job_id}
            start(number, job_id, ARGS[-1], option("-o"), option("-e"), env)
        print(job_id)
    elif NAME == "condor_submit":
        number = next_number()
        if run_jobs:
            sub = dict(re.findall(r"^(\w+) = (.*)$", Path(ARGS[-1]).read_text(), re.MULTILINE))
            macros = sub["environment"].strip('"').replace("$(ClusterId)", str(number)).replace("$(ProcId)", "0")
            start(number, str(number), sub["executable"], sub["output"], sub["error"],
                  dict(item.split("=", 1) for item in macros.split()), cwd=sub["initialdir"])
        print(f"{number}.0 - {number}.0")
    elif NAME == "qstat" and run_jobs and "-F" in ARGS:  # PBS Pro: -x keeps finished jobs
        listed = {job_id: {"job_state": "R"} if code is None else {"job_state": "F", "Exit_status": code}
                  for job_id, code in jobs().values() if job_id in ARGS}
        print(json.dumps({"timestamp": int(time.time()), "pbs_server": "fakepbs", **({"Jobs": listed} if listed else {})}))
    elif NAME == "qstat" and run_jobs:  # SGE: finished jobs vanish
        rows = "".join(f"<job_list state=\"running\"><JB_job_number>{n}</JB_job_number><state>r</state></job_list>"
                       for n, (_, code) in jobs().items() if code is None)
        print(f"<?xml version='1.0'?>\n<job_info><queue_info>{rows}</queue_info><job_info></job_info></job_info>")
    elif NAME in ("qdel", "condor_rm") and run_jobs:
        kill(ARGS)
    elif NAME == "condor_q" and run_jobs:  # finished jobs leave the queue
        ads = [{"ClusterId": int(n), "ProcId": 0, "JobStatus": 2} for n, (_, code) in jobs().items() if code is None]
        print(json.dumps(ads) if ads else "", end="")
    return int(os.environ.get(KEY + "_RC", "0"))


if __name__ == "__main__":
    sys.exit(main())
