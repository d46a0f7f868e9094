"""Whether a run's launcher still lives, as a host asks it from its handle.json: a pid is recycled,
so its start time is compared too, also for handles written before the launcher recorded `started`
(they carry the start time in clock ticks after boot)."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from pipe_rules.host.launcher import RunHandle, pid_alive
from pipe_rules.store.hostid import HOST_KEY


def _ticks(pid: int) -> int:
    """The process's start in clock ticks after boot, as old handles stored it."""
    return round((psutil.Process(pid).create_time() - psutil.boot_time()) * os.sysconf("SC_CLK_TCK"))


def _handle(pid: int, **kwargs) -> RunHandle:
    return RunHandle(name="r", home="/nonexistent", config="c.yaml", run_dir="/nonexistent/run", pid=pid,
                     host=dict(HOST_KEY), **kwargs)


def test_an_old_handle_with_start_ticks_is_alive_only_for_the_process_it_names():
    me = os.getpid()
    assert pid_alive(_handle(me, start_ticks=_ticks(me)))
    assert pid_alive(_handle(me))  # neither start time recorded: the pid alone
    # the same pid with another start time: a recycled pid, not the launcher
    assert not pid_alive(_handle(me, start_ticks=_ticks(me) + 500))
    assert not pid_alive(_handle(me, started=psutil.Process(me).create_time() - 5))


def test_a_launcher_that_exited_is_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = _ticks(proc.pid)
    proc.wait()
    assert not pid_alive(_handle(proc.pid, start_ticks=ticks))
    assert not pid_alive(_handle(proc.pid))
