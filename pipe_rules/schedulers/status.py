"""Verdicts for array elements: ONE batched scheduler query per status round, never one per job.

How an element is judged, in order: its exit-code file (`exit/<i>`, written by array.sh: 0 is
success); else the scheduler's listing (queued or running: running; an error state such as SGE
`Eqw`, a held HTCondor proc, LSF `EXIT`, a failed SLURM state: failed; PBS keeps finished subjobs
listed with their exit status); else, once it vanished, the accounting (SGE `qacct`, SLURM
`sacct`, HTCondor `condor_history`; batched); else, after a grace period (shared-file-system lag),
failed: killed before it could write its exit code.
"""

from __future__ import annotations

import getpass
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUCCESS, FAILED, RUNNING = "success", "failed", "running"
Key = tuple[str, int]  # (array number, element index 1..K)


class QueryError(Exception):
    """The scheduler did not answer this round (daemon down, timeout): ask again next round."""


class MissingCommand(Exception):
    """The scheduler's client command is not on PATH: nothing can be judged from this host."""


@dataclass
class Element:
    number: str
    array_id: str
    index: int
    exit_file: Path
    missing_since: float | None = None

    @property
    def key(self) -> Key:
        return (self.number, self.index)


def run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError:
        raise MissingCommand(f"{argv[0]} not found on PATH: run Snakemake where the scheduler's client "
                             "commands are (SGE: source $SGE_ROOT/$SGE_CELL/common/settings.sh)") from None
    except subprocess.TimeoutExpired:
        raise QueryError(f"{argv[0]} did not answer within 120 s") from None


def _indices(text: str | None) -> list[int]:
    """SGE task lists: '3', '1-4:1', '2,5-9:2'; no list (a plain job) is element 1."""
    if not text:
        return [1]
    found = []
    for part in text.split(","):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        found += range(int(first), int(last or first) + 1, int(step or 1))
    return found


def parse_sge_xml(text: str) -> dict[Key, str]:
    """`qstat -xml`: listed tasks are running (queued too) unless their state has E (Eqw)."""
    verdicts: dict[Key, str] = {}
    for job in ET.fromstring(text).iter("job_list"):
        number, state = job.findtext("JB_job_number", ""), job.findtext("state", "")
        for index in _indices(job.findtext("tasks")):
            if verdicts.get((number, index)) != FAILED:
                verdicts[(number, index)] = FAILED if "E" in state else RUNNING
    return verdicts


def parse_qacct(text: str) -> dict[Key, str]:
    """`qacct -j N`: one block per task; a later block of the same task (ids wrap) wins."""
    verdicts: dict[Key, str] = {}
    for block in text.split("=" * 62):
        fields = dict(re.findall(r"^(\w+)\s+(.*?)\s*$", block, re.MULTILINE))
        if "jobnumber" not in fields or "exit_status" not in fields:
            continue
        task = fields.get("taskid", "undefined")
        index = int(task) if task.isdigit() else 1
        ok = fields["exit_status"].split()[0] == "0" and fields.get("failed", "0").split()[0] == "0"
        verdicts[(fields["jobnumber"], index)] = SUCCESS if ok else FAILED
    return verdicts


_SLURM_RUNNING = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                  "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}


def parse_slurm(text: str) -> dict[Key, str]:
    """`squeue -h -r -t all -o '%i|%T'` and `sacct -n -P -X -o JobID,State`: '123_4|RUNNING'."""
    verdicts: dict[Key, str] = {}
    for line in text.splitlines():
        job, _, state = line.strip().partition("|")
        match = re.fullmatch(r"(\d+)(?:_(\d+))?", job)
        if not match:
            continue  # '123_[5-9]' only without -r; steps ('123.batch') are not listed with -X
        word = state.split()[0] if state.split() else ""
        verdict = RUNNING if word in _SLURM_RUNNING else SUCCESS if word == "COMPLETED" else FAILED
        verdicts[(match.group(1), int(match.group(2) or 1))] = verdict
    return verdicts


def _pbs_verdict(state: str | None, exit_status: object) -> str:
    if state not in ("F", "X"):  # Q H W T R E B S U M: not finished
        return RUNNING
    try:
        return SUCCESS if int(exit_status) == 0 else FAILED  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return FAILED


def parse_pbs_json(text: str) -> dict[Key, str]:
    """PBS Pro `qstat -x -t -f -F json`: subjobs '123[4].server'; -x keeps finished ones (F)."""
    verdicts: dict[Key, str] = {}
    for job_id, attrs in (json.loads(text, strict=False).get("Jobs") or {}).items():
        match = re.match(r"(\d+)(?:\[(\d*)\])?", job_id)
        if not match or match.group(2) == "":  # the array's parent entry '123[]'
            continue
        verdicts[(match.group(1), int(match.group(2) or 1))] = _pbs_verdict(attrs.get("job_state"),
                                                                           attrs.get("Exit_status"))
    return verdicts


def parse_condor_json(text: str) -> dict[Key, str]:
    """`condor_q -json` / `condor_history -json` (nothing at all when no job matches)."""
    verdicts: dict[Key, str] = {}
    for ad in json.loads(text) if text.strip() else []:
        status = ad.get("JobStatus")
        if status in (1, 2, 6, 7):  # idle, running, transferring output, suspended
            verdict = RUNNING
        elif status == 4:  # completed
            verdict = SUCCESS if ad.get("ExitCode") == 0 and not ad.get("ExitBySignal") else FAILED
        else:  # 3 removed, 5 held (a held job never runs again by itself)
            verdict = FAILED
        verdicts[(str(ad.get("ClusterId")), int(ad.get("ProcId", 0)) + 1)] = verdict
    return verdicts


_LSF_RUNNING = {"PEND", "PROV", "RUN", "PSUSP", "USUSP", "SSUSP", "WAIT", "UNKWN"}


def parse_lsf_json(text: str) -> dict[Key, str]:
    """`bjobs -a -json -o 'jobid jobindex stat exit_code'`: DONE, EXIT (ZOMBI) or still pending/running."""
    verdicts: dict[Key, str] = {}
    for record in json.loads(text).get("RECORDS", []) if text.strip() else []:
        if "JOBID" not in record or record.get("ERROR"):
            continue  # 'Job <9> is not found'
        index = int(record.get("JOBINDEX") or 0) or 1
        stat = record.get("STAT", "")
        verdicts[(str(record["JOBID"]), index)] = (RUNNING if stat in _LSF_RUNNING
                                                   else SUCCESS if stat == "DONE" else FAILED)
    return verdicts


CONDOR_ATTRIBUTES = "ClusterId,ProcId,JobStatus,ExitCode,ExitBySignal,HoldReason"


def list_elements(scheduler: str, elements: list[Element]) -> dict[Key, str]:
    """ONE query for every element of `scheduler` still active (or an error for the round)."""
    ids = sorted({e.array_id for e in elements})
    if scheduler == "sge":
        argv, parse = ["qstat", "-xml", "-u", getpass.getuser()], parse_sge_xml
    elif scheduler == "slurm":
        argv, parse = ["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T"], parse_slurm
    elif scheduler == "pbs":  # unknown ids: stderr and rc != 0, the others are listed
        argv, parse = ["qstat", "-x", "-t", "-f", "-F", "json", *ids], parse_pbs_json
    elif scheduler == "htcondor":
        argv, parse = ["condor_q", "-json", "-attributes", CONDOR_ATTRIBUTES], parse_condor_json
    else:  # lsf: ids no longer known are reported in the records, the others listed
        argv, parse = ["bjobs", "-a", "-json", "-o", "jobid jobindex stat exit_code", *ids], parse_lsf_json
    proc = run(argv)
    if scheduler in ("pbs", "lsf"):  # rc != 0 also when some ids are no longer known: read the rest
        if not proc.stdout.strip():
            return {}
    elif proc.returncode != 0 or scheduler == "sge" and not proc.stdout.strip():
        raise QueryError(f"{argv[0]} exited {proc.returncode}: {proc.stderr.strip()[:300]}")
    try:
        return parse(proc.stdout)
    except (ET.ParseError, ValueError, AttributeError) as error:
        raise QueryError(f"cannot read the output of {argv[0]}: {error}") from None


def account(scheduler: str, elements: list[Element]) -> dict[Key, str]:
    """Verdicts of vanished elements from the accounting, batched; {} where there is none."""
    numbers = sorted({e.number for e in elements})
    found: dict[Key, str] = {}
    if scheduler == "sge":
        for number in numbers:  # qacct takes one job (all its tasks)
            proc = run(["qacct", "-j", number])
            found.update(parse_qacct(proc.stdout) if proc.returncode == 0 else {})
    elif scheduler == "slurm":
        proc = run(["sacct", "-n", "-P", "-X", "-j", ",".join(numbers), "-o", "JobID,State"])
        found = parse_slurm(proc.stdout) if proc.returncode == 0 else {}
    elif scheduler == "htcondor":
        constraint = " || ".join(f"ClusterId == {n}" for n in numbers)
        proc = run(["condor_history", "-json", "-attributes", CONDOR_ATTRIBUTES, "-constraint", constraint])
        try:
            found = parse_condor_json(proc.stdout) if proc.returncode == 0 else {}
        except ValueError:
            found = {}
    return found  # PBS (-x) and LSF (-a) keep finished elements in their listing


def exit_file_verdict(element: Element) -> str | None:
    try:
        code = element.exit_file.read_text().strip()
    except OSError:
        return None
    return SUCCESS if code == "0" else FAILED if code else None


def judge(scheduler: str, elements: list[Element], now: float, grace: float,
          lister: Callable = list_elements, accountant: Callable = account) -> dict[Key, str]:
    """A verdict for every element (see the module docstring). Raises QueryError for the round."""
    verdicts: dict[Key, str] = {}
    unlisted = []
    for element in elements:
        verdict = exit_file_verdict(element)
        if verdict:
            verdicts[element.key] = verdict
    rest = [e for e in elements if e.key not in verdicts]
    listed = lister(scheduler, rest) if rest else {}
    for element in rest:
        if element.key in listed:
            verdicts[element.key] = listed[element.key]
            element.missing_since = None
        else:
            unlisted.append(element)
    accounted = accountant(scheduler, unlisted) if unlisted else {}
    for element in unlisted:
        if element.key in accounted:
            verdicts[element.key] = accounted[element.key]
            continue
        element.missing_since = element.missing_since or now
        verdicts[element.key] = RUNNING if now - element.missing_since < grace else FAILED
    return verdicts
