"""Who ran an attempt: worker id, host, pid, shard and the scheduler's job id (result.json's `worker`)."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from typing import Any


def scheduler_job_id() -> str | None:
    """The array element as its scheduler names it (set by pipe_rules' array script), else guessed."""
    if os.environ.get("PIPE_RULES_SCHEDULER_JOB_ID"):
        return os.environ["PIPE_RULES_SCHEDULER_JOB_ID"]
    for var in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "PBS_JOBID", "JOB_ID", "CLUSTER_ID"):
        if os.environ.get(var):
            task = os.environ.get("SLURM_ARRAY_TASK_ID") or os.environ.get("SGE_TASK_ID") or os.environ.get("PBS_ARRAY_INDEX")
            return f"{os.environ[var]}_{task}" if task and task != "undefined" else os.environ[var]
    return None


def worker_identity(worker_id: str, shard: str | None) -> dict[str, Any]:
    """A fresh dict per attempt (the result owns it); the host and job id are looked up once per
    process, not per task (a uname call and a dozen environment lookups each)."""
    pid = os.getpid()
    host, job = _host_and_job(pid)
    return {"id": worker_id, "host": host, "pid": pid, "shard": shard, "scheduler_job_id": job}


@lru_cache(maxsize=1)
def _host_and_job(pid: int) -> tuple[str, str | None]:
    """Keyed by pid, so a forked child looks them up again."""
    return socket.gethostname(), scheduler_job_id()
