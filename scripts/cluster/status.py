#!/usr/bin/env python3
"""Print exactly one of `success`, `failed`, `running` for a job: the cluster-generic status command.

Usage: status.py [sge|pbs|htcondor] JOBID  (the scheduler defaults to the one submit.py recorded).

Why a cache: cluster-generic runs this command once PER JOB every round. So the first call of a
round asks the scheduler about all of this workflow's jobs in ONE batched query (SGE `qstat -xml`,
PBS `qstat -x -f -F json ID...`, HTCondor `condor_q -json`) and caches every verdict in a JSON
file (written atomically) for $PIPE_RULES_STATUS_TTL seconds (default 10: keep it below
--seconds-between-status-checks); the other calls only read it. A lock file makes concurrent calls
wait for the one querying instead of each running qstat.

How a job is judged: while the scheduler lists it, `running` (queued, held, running), `failed` in
an error state (SGE `Eqw`, HTCondor held or removed), or its exit status where finished jobs stay
listed (PBS `F`). Once it is no longer listed (finished jobs vanish from qstat), the exit-code file
its wrapper wrote decides (0: success). Without one, after $PIPE_RULES_STATUS_GRACE seconds
(default 60, for shared-file-system lag) the accounting decides (SGE `qacct -j`, HTCondor
`condor_history`, batched), and a job nobody knows is `failed` (killed before it could write the
file: qdel, walltime, node crash). A final verdict is stored in the job's record.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_common import (
    FAILED,
    RUNNING,
    SCHEDULER_ENV,
    SCHEDULERS,
    SUCCESS,
    active_records,
    fail,
    find_record,
    job_number,
    parse_scheduler_args,
    read_json,
    save_record,
    state_dir,
    write_json_atomic,
)

SCRIPT = "status.py"
USAGE = "status.py [sge|pbs|htcondor] JOBID"
CONDOR_ATTRIBUTES = "ClusterId,ProcId,JobStatus,ExitCode,ExitBySignal,HoldReason"


class QueryError(Exception):
    """The scheduler did not answer this round (daemon down, timeout): try again next round."""


def setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        fail(SCRIPT, f"${name}={raw!r} is not a number of seconds: unset it or give e.g. {default:g}")


def run(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        fail(SCRIPT, f"{command[0]} not found on PATH: run Snakemake where the scheduler's client commands "
                     "are (SGE: source $SGE_ROOT/$SGE_CELL/common/settings.sh)", 1)
    except subprocess.TimeoutExpired:
        raise QueryError(f"{command[0]} did not answer within 120 s")


# --- parsers of the schedulers' batched listings: job number -> verdict -------------------------

def parse_sge_xml(text: str) -> dict[str, str]:
    """`qstat -xml`: every listed job is running unless its state has E (Eqw: it will never run)."""
    verdicts: dict[str, str] = {}
    for job in ET.fromstring(text).iter("job_list"):
        number, state = job.findtext("JB_job_number", ""), job.findtext("state", "")
        if verdicts.get(number) != FAILED:  # array tasks are listed once each: an error wins
            verdicts[number] = FAILED if "E" in state else RUNNING
    return verdicts


def parse_qacct(text: str) -> str | None:
    """`qacct -j N`: the last block is the newest job with that number (ids wrap)."""
    blocks = text.split("==============================================================")
    last = blocks[-1] if blocks else ""
    failed = re.search(r"^failed\s+(\d+)", last, re.MULTILINE)
    status = re.search(r"^exit_status\s+(\d+)", last, re.MULTILINE)
    if not status:
        return None
    return SUCCESS if status.group(1) == "0" and (not failed or failed.group(1) == "0") else FAILED


def _pbs_verdict(state: str | None, exit_status: object) -> str:
    if state not in ("F", "X"):  # Q H W T R E B S U M: not finished
        return RUNNING
    try:
        return SUCCESS if int(exit_status) == 0 else FAILED  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return FAILED


def parse_pbs_json(text: str) -> dict[str, str]:
    """PBS Pro `qstat -x -f -F json`: finished jobs stay listed (F) with their Exit_status."""
    jobs = json.loads(text, strict=False).get("Jobs") or {}  # no "Jobs" key when nothing matched
    return {job_number(job_id): _pbs_verdict(attrs.get("job_state"), attrs.get("Exit_status"))
            for job_id, attrs in jobs.items()}


def parse_pbs_text(text: str) -> dict[str, str]:
    """Plain `qstat -x -f`, for servers whose JSON is broken by odd characters in Variable_List."""
    verdicts = {}
    for block in re.split(r"^Job Id:\s*", text, flags=re.MULTILINE)[1:]:
        state = re.search(r"^\s*job_state = (\S+)", block, re.MULTILINE)
        status = re.search(r"^\s*Exit_status = (-?\d+)", block, re.MULTILINE)
        verdicts[job_number(block.split("\n", 1)[0])] = _pbs_verdict(
            state.group(1) if state else None, status.group(1) if status else None)
    return verdicts


def parse_condor_json(text: str) -> dict[str, str]:
    """`condor_q -json` / `condor_history -json` (prints nothing at all when no job matches)."""
    per_cluster: dict[str, list[str]] = {}
    for ad in json.loads(text) if text.strip() else []:
        status = ad.get("JobStatus")
        if status in (1, 2, 6, 7):  # idle, running, transferring output, suspended
            verdict = RUNNING
        elif status == 4:  # completed
            ok = ad.get("ExitCode") == 0 and not ad.get("ExitBySignal")
            verdict = SUCCESS if ok else FAILED
        else:  # 3 removed, 5 held (a held job never runs again by itself)
            verdict = FAILED
        per_cluster.setdefault(str(ad.get("ClusterId")), []).append(verdict)
    return {number: RUNNING if RUNNING in found else FAILED if FAILED in found else SUCCESS
            for number, found in per_cluster.items()}


# --- one batched query per scheduler, and the accounting of jobs that vanished ------------------

def query_sge(records: list[dict]) -> dict[str, str]:
    proc = run(["qstat", "-xml", "-u", getpass.getuser()])
    if proc.returncode != 0:
        raise QueryError(f"qstat exited {proc.returncode}: {proc.stderr.strip()}")
    return parse_sge_xml(proc.stdout)


def query_pbs(records: list[dict]) -> dict[str, str]:
    if not records:
        return {}
    ids = [r["job_id"] for r in records]
    proc = run(["qstat", "-x", "-f", "-F", "json", *ids])  # unknown ids: stderr + rc != 0, others listed
    try:
        return parse_pbs_json(proc.stdout)
    except ValueError:
        text = run(["qstat", "-x", "-f", *ids])
        if not text.stdout.strip() and text.returncode != 0:
            raise QueryError(f"qstat exited {text.returncode}: {text.stderr.strip()}")
        return parse_pbs_text(text.stdout)


def query_htcondor(records: list[dict]) -> dict[str, str]:
    proc = run(["condor_q", "-json", "-attributes", CONDOR_ATTRIBUTES])
    if proc.returncode != 0:
        raise QueryError(f"condor_q exited {proc.returncode}: {proc.stderr.strip()}")
    return parse_condor_json(proc.stdout)


def account_sge(records: list[dict]) -> dict[str, str]:
    verdicts = {}
    for record in records:  # qacct takes one job; only jobs that vanished without an exit file get here
        proc = run(["qacct", "-j", record["number"]])
        verdict = parse_qacct(proc.stdout) if proc.returncode == 0 else None
        if verdict:
            verdicts[record["number"]] = verdict
    return verdicts


def account_htcondor(records: list[dict]) -> dict[str, str]:
    constraint = " || ".join(f"ClusterId == {r['number']}" for r in records)
    proc = run(["condor_history", "-json", "-attributes", CONDOR_ATTRIBUTES, "-match", str(len(records)),
                "-constraint", constraint])
    try:
        return parse_condor_json(proc.stdout) if proc.returncode == 0 else {}
    except ValueError:
        return {}


QUERIES: dict[str, Callable[[list[dict]], dict[str, str]]] = {
    "sge": query_sge, "pbs": query_pbs, "htcondor": query_htcondor}
ACCOUNTING: dict[str, Callable[[list[dict]], dict[str, str]]] = {
    "sge": account_sge, "pbs": lambda records: {}, "htcondor": account_htcondor}


def exit_file_verdict(record: dict) -> str | None:
    if not record.get("exit_file"):
        return None
    try:
        code = Path(record["exit_file"]).read_text().strip()
    except OSError:
        return None
    return SUCCESS if code == "0" else FAILED if code else None


def refresh(scheduler: str, grace: float) -> dict:
    """Verdicts for every active job of `scheduler`, from one batched query (plus accounting)."""
    started = time.time()
    records = list(active_records(scheduler))
    try:
        listed = QUERIES[scheduler](records)
    except (QueryError, ET.ParseError, ValueError) as error:
        print(f"{SCRIPT}: warning: {error}; reporting running, asking again next round", file=sys.stderr)
        return {"time": started, "error": str(error), "jobs": {r["number"]: RUNNING for r in records}}
    verdicts: dict[str, str] = {}
    overdue = []
    for record in records:
        verdict = listed.get(record["number"]) or exit_file_verdict(record)
        if verdict is None:  # vanished without an exit code: file-system lag, or killed
            if record.get("missing_since") is None:
                record["missing_since"] = started
                save_record(record)
            if started - record["missing_since"] < grace:
                verdicts[record["number"]] = RUNNING
            else:
                overdue.append(record)
            continue
        if verdict != RUNNING:
            record["final"] = verdict
            save_record(record)
        elif record.get("missing_since") is not None:  # listed after all (submitted during a query)
            record["missing_since"] = None
            save_record(record)
        verdicts[record["number"]] = verdict
    accounted = ACCOUNTING[scheduler](overdue) if overdue else {}
    for record in overdue:
        record["final"] = verdicts[record["number"]] = accounted.get(record["number"], FAILED)
        save_record(record)
    return {"time": started, "jobs": verdicts}


def cached_verdicts(scheduler: str, ttl: float, grace: float) -> dict:
    """The round's verdicts: from the cache if younger than `ttl`, else from one fresh query."""
    path = state_dir() / f"cache-{scheduler}.json"

    def fresh(cache: dict | None) -> bool:  # age counted from when the query finished
        return cache is not None and 0 <= time.time() - float(cache.get("written", 0)) < ttl

    cache = read_json(path)
    if fresh(cache):
        return cache  # type: ignore[return-value]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait here, then read what the first one wrote
        cache = read_json(path)
        if not fresh(cache):
            cache = dict(refresh(scheduler, grace), written=time.time())
            write_json_atomic(path, cache)
    return cache  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    explicit, job_ids = parse_scheduler_args(SCRIPT, argv, USAGE)
    if len(job_ids) != 1:
        fail(SCRIPT, f"one job id at a time; usage: {USAGE}")
    number = job_number(job_ids[0])
    record = find_record(number, explicit)
    scheduler = explicit or (record or {}).get("scheduler") or os.environ.get(SCHEDULER_ENV)
    if scheduler not in SCHEDULERS:
        fail(SCRIPT, f"no record of job {job_ids[0]!r} in {state_dir()}: pass the scheduler first "
                     f"({USAGE}) or set ${SCHEDULER_ENV}")
    if record and record.get("final"):
        print(record["final"])
        return 0
    if record is None:  # not submitted by submit.py (state folder lost): judge it like the others
        record = {"scheduler": scheduler, "number": number, "job_id": job_ids[0], "submitted": time.time(),
                  "exit_file": None, "final": None, "missing_since": None, "adopted": True}
        save_record(record)
    cache = cached_verdicts(scheduler, setting("PIPE_RULES_STATUS_TTL", 10.0),
                            setting("PIPE_RULES_STATUS_GRACE", 60.0))
    print(cache["jobs"].get(number, RUNNING))  # absent: submitted after this round's query
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
