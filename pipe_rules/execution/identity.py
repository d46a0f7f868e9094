"""Who ran an attempt: worker id, host, pid, shard and the scheduler's job id (result.json's `worker`)."""

from __future__ import annotations

import os
import socket
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
    return {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid(), "shard": shard,
            "scheduler_job_id": scheduler_job_id()}
