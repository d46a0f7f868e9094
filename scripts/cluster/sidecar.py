#!/usr/bin/env python3
"""Cancel this Snakemake's unfinished cluster jobs when it stops: the cluster-generic sidecar command.

Why: Snakemake 9 hands its cancel command only the jobs that are not being polled at that very
moment (the status thread takes them out of its list while it asks about them), so a Ctrl-C
during a status round cancels nothing and the allocations run on. Snakemake starts this process
once per invocation and terminates it (SIGTERM) when it shuts down, after its own cancel. Then
every job submitted since this sidecar started whose record has no final verdict yet (neither
judged by status.py nor cancelled by cancel.py) is cancelled with one call per scheduler. After a
normal end all jobs have verdicts and nothing is cancelled. Ctrl-C (SIGINT to the whole terminal
process group) is ignored here: Snakemake decides when the run is over.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cancel import cancel_jobs
from cluster_common import SCHEDULERS, active_records

SCRIPT = "sidecar.py"


def unfinished_since(started: float) -> dict[str, list[str]]:
    """Job ids per scheduler of jobs submitted after `started` that have no verdict yet."""
    found: dict[str, list[str]] = {}
    for scheduler in SCHEDULERS:
        ids = [r["job_id"] for r in active_records(scheduler)
               if not r.get("final") and float(r.get("submitted", 0)) >= started]
        if ids:
            found[scheduler] = ids
    return found


def main() -> int:
    started = time.time() - 1.0  # clock granularity: a job submitted right away still counts
    stop = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    print("pipe_rules_sidecar", flush=True)  # Snakemake blocks until it reads this first line
    while not stop:
        signal.pause()
    for scheduler, ids in unfinished_since(started).items():
        print(f"{SCRIPT}: Snakemake stopped with {len(ids)} {scheduler} job(s) unfinished: cancelling "
              f"{' '.join(ids)}", file=sys.stderr)
        cancel_jobs(scheduler, ids, SCRIPT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
