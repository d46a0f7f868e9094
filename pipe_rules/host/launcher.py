"""The launcher of a run seen from a host: its handle (what handle.json stores) and its poll, and
whether the launcher process still lives. On the launcher's own host (host, boot id, pid namespace)
a pid alone is not enough: pids are recycled, so its start time is compared too (psutil). From any
other host a pid means nothing: there the launcher counts as alive while its lease file is fresh.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipe_rules.store import hostid
from pipe_rules.store.states import TERMINAL_RUN_STATES

HANDLE_SCHEMA_VERSION = 1
TERMINAL = frozenset(s.value for s in TERMINAL_RUN_STATES)
LAUNCHER_BEAT_S = 20  # the launcher touches launcher.lease this often while it lives
LAUNCHER_LEASE_S = 4 * LAUNCHER_BEAT_S  # a lease not renewed this long: the launcher is gone


@dataclass(frozen=True)
class RunHandle:
    """What a host needs to find a run again after a restart (stored as handle.json)."""
    name: str
    home: str  # <project>/<name>: config, handle, launcher log, snakemake metadata
    config: str
    run_dir: str
    pid: int | None = None  # the launcher (snakemake); its process group has the same id
    start_ticks: int | None = None  # handles written before `started`: the pid's start time in clock ticks
    started: float | None = None  # the launcher's start time (psutil), so a recycled pid is not taken for it
    host: dict[str, str] | None = None  # where the launcher runs: host, boot_id, pid_ns (store/hostid.py)
    command: tuple[str, ...] = ()
    profile: str | None = None
    log: str = ""
    launches: int = 0
    launched_at: float | None = None
    created_at: float = field(default_factory=time.time)
    schema_version: int = HANDLE_SCHEMA_VERSION


@dataclass(frozen=True)
class RunPoll:
    name: str
    run_state: str  # CREATED until staged, then the run's state (reporting.status)
    counts: dict[str, int]  # tasks per state
    launcher_alive: bool
    launcher_exit: int | None = None  # exit status of the last launch; None while it runs or if it was killed

    @property
    def done(self) -> bool:
        """Every task ended and snakemake has exited: collect() may be called."""
        return self.run_state in TERMINAL and not self.launcher_alive

    @property
    def needs_launch(self) -> bool:
        """The launcher is gone but work is left: launch() resumes the run."""
        return self.run_state not in TERMINAL and not self.launcher_alive


def started_from_ticks(ticks: int) -> float:
    """A start time in clock ticks after boot (handles written before `started`) as the epoch
    seconds psutil gives (boot time + ticks / SC_CLK_TCK, as psutil computes it on Linux)."""
    return psutil.boot_time() + ticks / os.sysconf("SC_CLK_TCK")


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # a launcher this process started stays a zombie until reaped
    except ChildProcessError:
        pass


def on_another_host(handle: RunHandle) -> bool:
    return handle.host is not None and not hostid.same_host(handle.host)


def pid_alive(handle: RunHandle) -> bool:
    """The handle's launcher runs (not a zombie, not another process that got its pid); from another
    host: its lease is fresh (no lease yet: it may be alive, so alive)."""
    if handle.pid is None:
        return False
    if on_another_host(handle):
        try:
            age = time.time() - (Path(handle.home) / "launcher.lease").stat().st_mtime
        except FileNotFoundError:
            return True  # cannot tell from here: never take a live launcher for dead
        return age < LAUNCHER_LEASE_S
    reap(handle.pid)
    started = handle.started
    if started is None and handle.start_ticks is not None:
        started = started_from_ticks(handle.start_ticks)
    return hostid.pid_alive(handle.pid, started)
