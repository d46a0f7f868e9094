#!/usr/bin/env python3
"""Cancel jobs in one scheduler call: the cluster-generic cancel command (Ctrl-C of Snakemake).

Usage: cancel.py [sge|pbs|htcondor] JOBID...

Snakemake runs the cancel command WITHOUT a shell and with the job ids as its only arguments
(`[cancel_cmd] + ids`), so the profile can name this file but cannot add the scheduler: it is
taken from the records submit.py wrote (or $PIPE_RULES_SCHEDULER). All ids of a scheduler go to
ONE `qdel` (SGE, PBS) or `condor_rm` (HTCondor) call: Snakemake gives each call only 2 seconds,
so one call per job would leave jobs running. Set cluster-generic-cancel-nargs high for the same
reason. Cancelled jobs get a final `failed` verdict in their records, so sidecar.py (the safety net
for a Ctrl-C that Snakemake does not pass on) does not cancel them a second time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_common import FAILED, fail, find_record, job_number, parse_scheduler_args, save_record, scheduler_for

SCRIPT = "cancel.py"
USAGE = "cancel.py [sge|pbs|htcondor] JOBID..."
COMMANDS = {"sge": "qdel", "pbs": "qdel", "htcondor": "condor_rm"}


def cancel_jobs(scheduler: str, job_ids: list[str], script: str = SCRIPT) -> int:
    """ONE cancel call for all `job_ids` of `scheduler`; their records become final. Its exit code."""
    command = [COMMANDS[scheduler], *job_ids]
    try:
        code = subprocess.call(command)  # its messages go to Snakemake's terminal as they are
    except FileNotFoundError:
        fail(script, f"{command[0]} not found on PATH: cancel {' '.join(job_ids)} by hand, and run Snakemake "
                     f"where the {scheduler} client commands are", 1)
    for job_id in job_ids:
        record = find_record(job_number(job_id), scheduler)
        if record is not None and not record.get("final"):
            save_record(dict(record, final=FAILED, cancelled=True))
    return code


def main(argv: list[str]) -> int:
    explicit, job_ids = parse_scheduler_args(SCRIPT, argv, USAGE)
    worst = 0
    for scheduler, ids in scheduler_for(SCRIPT, job_ids, explicit).items():
        worst = max(worst, cancel_jobs(scheduler, ids))
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
