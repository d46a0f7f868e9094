"""The launcher of a run seen from a host: its handle (what handle.json stores) and its poll, and
whether the launcher process still lives (a pid alone is not enough: pids are recycled, so its start
time from /proc is compared too).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipe_rules.store.states import TERMINAL_RUN_STATES

HANDLE_SCHEMA_VERSION = 1
TERMINAL = frozenset(s.value for s in TERMINAL_RUN_STATES)


@dataclass(frozen=True)
class RunHandle:
    """What a host needs to find a run again after a restart (stored as handle.json)."""
    name: str
    home: str  # <project>/<name>: config, handle, launcher log, snakemake metadata
    config: str
    run_dir: str
    pid: int | None = None  # the launcher (snakemake); its process group has the same id
    start_ticks: int | None = None  # the pid's start time (/proc), so a recycled pid is not taken for it
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


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (None where there is no /proc)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # a launcher this process started stays a zombie until reaped
    except ChildProcessError:
        pass


def pid_alive(handle: RunHandle) -> bool:
    """The handle's launcher runs (not a zombie, not another process that got its pid)."""
    if handle.pid is None:
        return False
    reap(handle.pid)
    try:
        stat = Path(f"/proc/{handle.pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(handle.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return handle.start_ticks is None or int(fields[19]) == handle.start_ticks
