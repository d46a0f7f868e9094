#!/usr/bin/env python3
"""Stand-in for the PBS, HTCondor and LSF commands (and SGE's, for the unit tests) (symlinked names).

Why: PBS, HTCondor and LSF cannot run here, yet the submit line must be checked exactly and a
whole campaign must run through their profiles. Every call appends {"cmd", "args"} to
$FAKE_SCHEDULER_LOG. Output: the file named by $FAKE_<CMD>_OUTPUT (CMD upper case, e.g.
FAKE_CONDOR_Q_OUTPUT), exit code $FAKE_<CMD>_RC, delay $FAKE_<CMD>_SLEEP seconds.
With $FAKE_RUN_JOBS=1 the submit commands really run the array: every element is started in the
background with the scheduler's variables set as the real scheduler sets them (SGE `JOB_ID` +
`SGE_TASK_ID`, PBS Pro `PBS_JOBID=N[i].server` + `PBS_ARRAY_INDEX`, HTCondor `arguments = $(Process)`
and the description's environment, LSF `LSB_JOBID` + `LSB_JOBINDEX`), and the status commands list
those elements in the scheduler's documented formats: running while their process runs, PBS `F`
with Exit_status and LSF `DONE`/`EXIT` afterwards. The cancel commands end whole arrays or single
elements (`N.i`, `N[i].server`, `N.p`, `N[i]`) with SIGTERM.
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


def option(flag: str, default: str | None = None) -> str | None:
    return ARGS[ARGS.index(flag) + 1] if flag in ARGS else default


# Runs the element in its own process group (as a scheduler does) and records its exit code: a
# kill of that group (qdel/condor_rm/bkill) must not take the recorder with it.
_HARNESS = """
import subprocess, sys
job = subprocess.Popen(sys.argv[3:], start_new_session=True)
open(sys.argv[2], "w").write(str(job.pid))
code = job.wait()
open(sys.argv[1], "w").write(str(code if code >= 0 else 128 - code))
"""


def start(number: int, index: int, command: list[str], out: str, err: str, env: dict, cwd: str | None) -> None:
    """Run one element detached; its exit code lands in fake_jobs/<number>.<index>.rc."""
    JOBS.mkdir(exist_ok=True)
    (JOBS / f"{number}.{index}.json").write_text(json.dumps({"number": number, "index": index}))
    files = [str(JOBS / f"{number}.{index}.{kind}") for kind in ("rc", "pid")]
    with open(out, "w") as stdout, open(err, "w") as stderr:
        subprocess.Popen([sys.executable, "-c", _HARNESS, *files, *command], stdout=stdout, stderr=stderr,
                         stdin=subprocess.DEVNULL, env=dict(os.environ, **env), cwd=cwd, start_new_session=True)


def elements() -> dict[tuple[int, int], int | None]:
    """(number, index) -> exit code, None while running."""
    table = {}
    for path in sorted(JOBS.glob("*.json")) if JOBS.exists() else []:
        entry = json.loads(path.read_text())
        rc = JOBS / f"{entry['number']}.{entry['index']}.rc"
        code = rc.read_text().strip() if rc.exists() else ""
        table[(entry["number"], entry["index"])] = int(code) if code else None
    return table


def kill(targets: list[str]) -> None:
    """Whole arrays (`N`, `N[].server`) or single elements (`N.i`, `N[i].server`, `N[i]`, HTCondor `N.p`)."""
    for (number, index), code in elements().items():
        element = {str(number), f"{number}[].fakepbs"}
        element |= {f"{number}[{index}].fakepbs", f"{number}[{index}]"}
        element |= {f"{number}.{index - 1}"} if NAME == "condor_rm" else {f"{number}.{index}"}
        if code is None and element & set(targets):
            try:
                os.killpg(int((JOBS / f"{number}.{index}.pid").read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass


def span(text: str) -> int:
    """'1-K' (with an optional '%N' throttle) -> K."""
    match = re.fullmatch(r"1-(\d+)(?:%\d+)?", text)
    if not match:
        raise SystemExit(f"{NAME}: bad array range {text!r}")
    return int(match.group(1))


def submit_qsub(run_jobs: bool) -> None:
    number, script = next_number(), ARGS[-1]
    if "-terse" in ARGS:  # SGE: -t 1-K, output 'N.1-K:1'
        size = span(option("-t", "1-1"))
        print(f"{number}.1-{size}:1")
        for index in range(1, size + 1) if run_jobs else ():
            env = {"JOB_ID": str(number), "SGE_TASK_ID": str(index)}
            out, err = (option(f).replace("$TASK_ID", str(index)) for f in ("-o", "-e"))
            start(number, index, [script], out, err, env, None)
        return
    size = span(option("-J")) if "-J" in ARGS else 0  # PBS Pro: -J 1-K, output 'N[].server'
    print(f"{number}[].fakepbs" if size else f"{number}.fakepbs")
    for index in range(1, max(size, 1) + 1) if run_jobs else ():
        env = {"PBS_JOBID": f"{number}[{index}].fakepbs", "PBS_ARRAY_INDEX": str(index)} if size else \
              {"PBS_JOBID": f"{number}.fakepbs"}
        out, err = (option(f).replace("^array_index^", str(index)) for f in ("-o", "-e"))
        start(number, index, [script], out, err, env, None)


def submit_condor(run_jobs: bool) -> None:
    number = next_number()
    sub = dict(re.findall(r"^(\w+) = (.*)$", Path(ARGS[-1]).read_text(), re.MULTILINE))
    size = int(re.search(r"^queue (\d+)$", Path(ARGS[-1]).read_text(), re.MULTILINE).group(1))
    print(f"{number}.0 - {number}.{size - 1}")
    for proc in range(size) if run_jobs else ():
        macros = sub["environment"].strip('"').replace("$(ClusterId)", str(number)).replace("$(Process)", str(proc))
        env = dict(item.split("=", 1) for item in macros.split())
        out, err = (sub[k].replace("$(Process)", str(proc)) for k in ("output", "error"))
        start(number, proc + 1, [sub["executable"], sub["arguments"].replace("$(Process)", str(proc))], out, err,
              env, sub["initialdir"])


def submit_bsub(run_jobs: bool) -> None:
    number, script = next_number(), ARGS[-1]
    match = re.fullmatch(r"[^\[]+\[(1-\d+)\](?:%\d+)?", option("-J"))
    size = span(match.group(1)) if match else 1
    print(f"Job <{number}> is submitted to queue <normal>.")
    for index in range(1, size + 1) if run_jobs else ():
        env = {"LSB_JOBID": str(number), "LSB_JOBINDEX": str(index) if match else "0"}
        out, err = (option(f).replace("%I", str(index)).replace("%J", str(number)) for f in ("-o", "-e"))
        start(number, index, [script], out, err, env, option("-cwd"))


def list_jobs() -> None:
    table = elements()
    if NAME == "qstat" and "-F" in ARGS:  # PBS Pro -x -t: subjobs N[i].server, finished ones stay (F)
        listed = {}
        for (number, index), code in table.items():
            job_id = f"{number}[{index}].fakepbs" if f"{number}[].fakepbs" in ARGS else f"{number}.fakepbs"
            if job_id in ARGS or f"{number}[].fakepbs" in ARGS:
                listed[job_id] = {"job_state": "R"} if code is None else {"job_state": "F", "Exit_status": code}
        print(json.dumps({"timestamp": int(time.time()), "pbs_server": "fakepbs", **({"Jobs": listed} if listed else {})}))
    elif NAME == "qstat":  # SGE: running tasks one row each, finished ones vanish
        rows = "".join(f"<job_list state=\"running\"><JB_job_number>{n}</JB_job_number><state>r</state>"
                       f"<tasks>{i}</tasks></job_list>" for (n, i), code in table.items() if code is None)
        print(f"<?xml version='1.0'?>\n<job_info><queue_info>{rows}</queue_info><job_info></job_info></job_info>")
    elif NAME == "condor_q":  # finished procs leave the queue
        ads = [{"ClusterId": n, "ProcId": i - 1, "JobStatus": 2} for (n, i), code in table.items() if code is None]
        print(json.dumps(ads) if ads else "", end="")
    elif NAME == "bjobs":  # -a: finished elements stay listed as DONE/EXIT
        wanted = {a for a in ARGS if a.isdigit()}
        records = [{"JOBID": str(n), "JOBINDEX": str(i), "STAT": "RUN" if code is None else "DONE" if code == 0 else "EXIT",
                    "EXIT_CODE": "" if not code else str(code)} for (n, i), code in table.items() if str(n) in wanted]
        print(json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}))


def main() -> int:
    with open(LOG, "a") as log:
        log.write(json.dumps({"cmd": NAME, "args": ARGS}) + "\n")
    time.sleep(float(os.environ.get(KEY + "_SLEEP", "0")))
    run_jobs = os.environ.get("FAKE_RUN_JOBS") == "1"
    if os.environ.get(KEY + "_OUTPUT"):
        sys.stdout.write(Path(os.environ[KEY + "_OUTPUT"]).read_text())
    elif NAME == "qsub":
        submit_qsub(run_jobs)
    elif NAME == "condor_submit":
        submit_condor(run_jobs)
    elif NAME == "bsub":
        submit_bsub(run_jobs)
    elif NAME in ("qdel", "condor_rm", "bkill") and run_jobs:
        kill(ARGS)
    elif NAME in ("qstat", "condor_q", "bjobs") and run_jobs:
        list_jobs()
    return int(os.environ.get(KEY + "_RC", "0"))


if __name__ == "__main__":
    sys.exit(main())
