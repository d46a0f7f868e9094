"""What each task attempt cost: CPU-hours and the peak memory of that task alone.

A worker runs many tasks in one process, so the process's lifetime peak (ru_maxrss) says nothing
about one task. On Linux, writing 5 to /proc/self/clear_refs resets the peak to the current RSS;
VmHWM in /proc/self/status then holds the peak since that reset, i.e. of this task (the worker's
own baseline included: `rss_end_mb`, the worker's memory after the task, is about that baseline).
Elsewhere the lifetime peak is recorded and marked `peak_rss_scope: process`. Measuring costs
about 30 microseconds per task.

CPU-hours are reported two ways: `cpu_hours` = cores x wall time (what the allocation paid for)
and `cpu_hours_used` = measured CPU time of the worker and its child processes.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

_proc_fds: dict[str, tuple[int, int]] = {}  # name -> (pid that opened it, fd): /proc/self is per process


def _proc_fd(name: str, flags: int) -> int | None:
    pid = os.getpid()
    held = _proc_fds.get(name)
    if held and held[0] == pid:
        return held[1]
    try:
        fd = os.open(f"/proc/self/{name}", flags | os.O_CLOEXEC)
    except OSError:
        return None
    _proc_fds[name] = (pid, fd)
    return fd


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS to its current RSS; False where the system cannot."""
    fd = _proc_fd("clear_refs", os.O_WRONLY)
    if fd is None:
        return False
    try:
        os.write(fd, b"5")
    except OSError:
        return False
    return True


def _status_mb(*keys: bytes) -> tuple[float | None, ...]:
    """Values (MB) of /proc/self/status lines such as VmHWM, from one read (about 15 us)."""
    fd = _proc_fd("status", os.O_RDONLY)
    if fd is None:
        return (None,) * len(keys)
    try:
        text = os.pread(fd, 16384, 0)
    except OSError:
        return (None,) * len(keys)
    values: list[float | None] = []
    for key in keys:
        try:
            at = text.index(key + b":")
            values.append(int(text[at + len(key) + 1:text.index(b"kB", at)]) / 1024.0)
        except ValueError:
            values.append(None)
    return tuple(values)


def lifetime_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """CPU of this process (all threads) and of child processes it has waited for (external engines)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class TaskMeter:
    """Started right before a task, read right after it."""

    started_at: float = field(default_factory=time.time)
    cpu0: float = field(default_factory=_cpu_s)
    task_scope: bool = field(default_factory=reset_peak_rss)

    def read(self, cores: int, memory_mb: int) -> tuple[dict[str, float], dict[str, Any]]:
        """(timings, resources) blocks of result.json."""
        ended = time.time()
        wall_s = ended - self.started_at
        cpu_s = max(0.0, _cpu_s() - self.cpu0)
        peak, rss_end = _status_mb(b"VmHWM", b"VmRSS")
        peak = peak if self.task_scope else None
        timings = {"started_at": self.started_at, "ended_at": ended, "wall_s": wall_s, "cpu_s": cpu_s}
        resources: dict[str, Any] = {
            "cores": cores, "memory_mb": memory_mb,
            "peak_rss_mb": peak if peak is not None else lifetime_peak_rss_mb(),
            "peak_rss_scope": "task" if peak is not None else "process",
            "cpu_hours": cores * wall_s / 3600.0, "cpu_hours_used": cpu_s / 3600.0,
        }
        if rss_end is not None:
            resources["rss_end_mb"] = rss_end
        return timings, resources
