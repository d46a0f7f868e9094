"""Measuring child processes for bench.py: wall time, peak RSS, file-system metadata calls, the floor.

Every step runs as its own process, as in a real run; this script stays small (a child's ru_maxrss
starts at its parent's RSS when it forks).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PY = sys.executable


@dataclass
class Proc:
    seconds: float
    peak_rss_mb: float
    stdout: str = ""
    cpu_s: float = 0.0  # user + system CPU of the process and its waited-for children (wait4)


def vm_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_all(cmds: list[list[str]], capture: bool = False, **popen) -> list[Proc]:
    """Start the commands together, wait for all; wall time of the group and each one's peak RSS.

    Peak RSS is the larger of the kernel's figure for the child (wait4) and VmRSS sampled every
    50 ms: workers reset their own high-water mark per task to measure each task's memory."""
    start = time.perf_counter()
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    procs = [subprocess.Popen(cmd, stdout=out, text=True, **popen) for cmd in cmds]
    sampled = {p.pid: 0.0 for p in procs}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid, peak in sampled.items():
                sampled[pid] = max(peak, vm_rss_mb(pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outputs = {p.pid: p.stdout.read() if capture else "" for p in procs}  # small outputs only
    peaks, cpu = {}, {}
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        peaks[proc.pid] = usage.ru_maxrss / 1024
        cpu[proc.pid] = usage.ru_utime + usage.ru_stime
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    for proc, cmd in zip(procs, cmds):
        if proc.returncode != 0:
            raise SystemExit(f"exit {proc.returncode}: {shlex.join(cmd)}")
    return [Proc(elapsed, max(peaks[p.pid], sampled[p.pid]), outputs[p.pid], cpu[p.pid]) for p in procs]


def cli(*args: str) -> list[str]:
    return [PY, "-m", "pipe_rules", *args]


# --- file-system metadata calls ------------------------------------------------------------------

META = ("openat", "open", "creat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "link", "linkat",
        "stat", "newfstatat", "lstat", "statx", "access", "faccessat", "faccessat2", "mkdir", "mkdirat",
        "rmdir", "getdents64", "flock", "utimensat", "chdir", "readlink", "readlinkat")


def sum_traces(paths: list[Path]) -> dict[str, int]:
    """Metadata calls summed over `strace -c` summaries (columns: % seconds usecs calls [errors] name)."""
    calls: dict[str, int] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in META and parts[3].isdigit():
                calls[parts[-1]] = calls.get(parts[-1], 0) + int(parts[3])
    return calls


def traced(cmds: list[list[str]], folder: Path, tag: str) -> dict[str, int]:
    traces = [folder / f"strace-{tag}-{i}.txt" for i in range(len(cmds))]
    run_all([["strace", "-f", "-c", "-o", str(t), *cmd] for t, cmd in zip(traces, cmds)])
    calls = sum_traces(traces)
    for trace in traces:
        trace.unlink()
    return calls


def help_calls() -> dict[str, int]:
    """What importing pipe_rules and starting the CLI costs with no run at all (per process)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-strace-"))
    try:
        return traced([cli("--help")], folder, "help")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the floor -----------------------------------------------------------------------------------


def floor_ms(folder: Path, n: int = 2000, size: int = 300) -> float:
    """The cheapest durable step a task can take here: write a small new file to a temp name and
    rename it into place (what every state or result write is), on the run's own filesystem.
    Median of 5 rounds of n/5 writes, in a child process like the workers."""
    code = ("import os, sys, time\n"
            "d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
            "data = b'x' * size\nrounds = []\n"
            "for r in range(5):\n"
            "    start = time.perf_counter()\n"
            "    for i in range(n // 5):\n"
            "        tmp = f'{d}/.f{r}-{i}.tmp'\n"
            "        with open(tmp, 'wb') as h:\n"
            "            h.write(data)\n"
            "        os.replace(tmp, f'{d}/f{r}-{i}')\n"
            "    rounds.append((time.perf_counter() - start) / (n // 5))\n"
            "print(sorted(rounds)[2] * 1000)\n")
    target = Path(tempfile.mkdtemp(prefix="floor-", dir=folder))
    try:
        out = subprocess.run([PY, "-c", code, str(target), str(n), str(size)], check=True, capture_output=True,
                             text=True).stdout
        return float(out)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def largest_folder(root: Path) -> tuple[int, str]:
    best = (0, "")
    for folder, subdirs, names in os.walk(root):
        best = max(best, (len(subdirs) + len(names), os.path.relpath(folder, root)))
    return best


def inodes(root: Path) -> int:
    """Files and folders under `root` (what the run costs the filesystem's inode table)."""
    return sum(1 + len(names) for _, _, names in os.walk(root))
