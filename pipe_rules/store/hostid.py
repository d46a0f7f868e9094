"""Who and where a process is, in terms another process can check: host name, boot id, pid
namespace, pid and process start time. A pid means something only on the same host, boot and pid
namespace; everywhere else liveness must come from a lease. Liveness is asked through psutil."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot-{psutil.boot_time():.0f}"


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "?"


def host_key() -> dict[str, str]:
    """Recomputed on demand: a worker started in its own UTS namespace has its own host name."""
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid_ns": _pid_namespace()}


HOST_KEY = host_key()


def same_host(record: dict) -> bool:
    """True if `record` (with host, boot_id, pid_ns) was written on this host, boot and pid namespace."""
    return all(record.get(k) == v for k, v in HOST_KEY.items())


def process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Is process `pid` (started at `started`, if known) alive here? A zombie is dead; a recycled pid
    (another start time) is not the process that was meant."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 0.05
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
