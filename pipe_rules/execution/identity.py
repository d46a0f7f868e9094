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
    """A fresh dict per attempt (the result owns it); the host and job id are looked up once per
    process, not per task (a uname call and a dozen environment lookups each)."""
    pid = os.getpid()
    if _this_process.get("pid") != pid:  # first call, or a forked child
        _this_process.update(pid=pid, host=socket.gethostname(), job=scheduler_job_id())
    return {"id": worker_id, "host": _this_process["host"], "pid": pid, "shard": shard,
            "scheduler_job_id": _this_process["job"]}


_this_process: dict[str, Any] = {}
