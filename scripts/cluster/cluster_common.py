"""What submit.py, status.py and cancel.py share: the state folder, job records and job-id parsing.

Snakemake's cluster-generic executor runs three separate commands per job (submit once, status
every round, cancel on Ctrl-C) and keeps nothing between them but the job id. So the submit
script leaves a small JSON record per submission in a state folder beside Snakemake's own
(`.snakemake/pipe_rules_cluster/` of the working directory, on the shared file system), and the
job itself leaves an exit-code file there: finished jobs vanish from `qstat`/`condor_q`, and the
exit-code file is what tells success from failure without relying on the scheduler's accounting.

Standard library only, Python >= 3.8: the status and cancel commands run with whatever
`python3` is on the submit host's PATH.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

SCHEDULERS = ("sge", "pbs", "htcondor")
# Overrides the state folder (tests; or a run whose .snakemake/ is not on the shared file system).
STATE_ENV = "PIPE_RULES_CLUSTER_STATE"
# Names the scheduler for status.py/cancel.py when a job has no record (e.g. state folder lost).
SCHEDULER_ENV = "PIPE_RULES_SCHEDULER"
SUCCESS, FAILED, RUNNING = "success", "failed", "running"

# qsub/condor_submit print e.g. "123", "123.server", "123[].server", "7.1-3:1" (SGE array),
# "42.0 - 42.0" (condor_submit -terse) or "... submitted to cluster 42.".
_LEADING_NUMBER = re.compile(r"^\s*(\d+)")
_CONDOR_CLUSTER = re.compile(r"submitted to cluster (\d+)")


def fail(script: str, message: str, code: int = 2) -> NoReturn:
    """One line on stderr naming what is wrong and the fix, then exit (Snakemake shows stderr)."""
    print(f"{script}: error: {message}", file=sys.stderr)
    sys.exit(code)


def job_number(raw: str) -> str:
    """The numeric part of a job id as the scheduler prints it: '123[].srv' -> '123'.

    Records and the status cache are keyed by it, so '123', '123.server' and '123[]' agree.
    """
    text = raw.strip()
    cluster = _CONDOR_CLUSTER.search(text)
    match = cluster or _LEADING_NUMBER.match(text)
    if not match:
        raise ValueError(f"not a job id: {raw!r}")
    return match.group(1)


def state_dir() -> Path:
    """The state folder, absolute: jobs on other hosts write their exit-code files into it."""
    given = os.environ.get(STATE_ENV)
    return Path(given or ".snakemake/pipe_rules_cluster").resolve()


def record_path(scheduler: str, number: str, done: bool = False) -> Path:
    return state_dir() / "jobs" / ("done" if done else "active") / f"{scheduler}-{number}.json"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write by temp file + rename: concurrent readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, sort_keys=True)
        os.replace(temp, str(path))
    except BaseException:
        _remove(Path(temp))
        raise


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_json(path: Path) -> dict | None:
    """The document at `path`, or None if it is missing or unreadable (a lost race, a crash)."""
    try:
        with open(path) as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_record(number: str, scheduler: str | None = None) -> dict | None:
    """The record of job `number`, active or done, of `scheduler` or else of any scheduler."""
    for done in (False, True):
        for name in [scheduler] if scheduler else SCHEDULERS:
            record = read_json(record_path(name, number, done))
            if record is not None:
                return record
    return None


def active_records(scheduler: str) -> Iterator[dict]:
    """Records of submitted jobs of `scheduler` whose outcome is not known yet."""
    folder = state_dir() / "jobs" / "active"
    for path in sorted(folder.glob(f"{scheduler}-*.json")):
        record = read_json(path)
        if record is not None:
            yield record


def save_record(record: dict) -> None:
    """Store `record`; once it has a final status it moves to done/ and leaves the active set."""
    active = record_path(record["scheduler"], record["number"])
    if record.get("final"):
        write_json_atomic(record_path(record["scheduler"], record["number"], done=True), record)
        _remove(active)
    else:  # a new job that reuses the number of an old one (scheduler reinstalled) replaces it
        write_json_atomic(active, record)
        _remove(record_path(record["scheduler"], record["number"], done=True))


def scheduler_for(script: str, job_ids: list[str], explicit: str | None) -> dict[str, list[str]]:
    """Group `job_ids` by scheduler: the one given, else each job's record, else $PIPE_RULES_SCHEDULER."""
    if explicit:
        return {explicit: list(job_ids)}
    groups: dict[str, list[str]] = {}
    fallback = os.environ.get(SCHEDULER_ENV)
    for job_id in job_ids:
        record = find_record(job_number(job_id))
        scheduler = record["scheduler"] if record else fallback
        if scheduler not in SCHEDULERS:
            fail(script, f"no record of job {job_id!r} in {state_dir()} and ${SCHEDULER_ENV} is "
                         f"{fallback!r}: pass the scheduler first ({'|'.join(SCHEDULERS)}) or set "
                         f"${SCHEDULER_ENV}")
        groups.setdefault(scheduler, []).append(job_id)
    return groups


def parse_scheduler_args(script: str, argv: list[str], usage: str) -> tuple[str | None, list[str]]:
    """Split `[SCHEDULER] JOBID...` (Snakemake's cancel command cannot pass extra arguments)."""
    explicit = argv[0] if argv and argv[0] in SCHEDULERS else None
    job_ids = argv[1:] if explicit else argv
    if not job_ids or any(a.startswith("-") for a in job_ids):
        fail(script, f"usage: {usage}")
    for job_id in job_ids:
        try:
            job_number(job_id)
        except ValueError:
            fail(script, f"{job_id!r} is not a job id (expected e.g. 123, 123.server or 123[].server); "
                         f"usage: {usage}")
    return explicit, job_ids
