"""A kill storm on a run shared by two client mounts: workers as on other nodes, killed at random.

Each worker is `pipe-rules work` in its own UTS namespace (its own host name) and its own PID
namespace (its pids mean nothing to the others, as on another node), on mount A or mount B in
turn. While the run drains, a random live worker gets SIGKILL or SIGTERM and a new one takes its
place. Then the kills stop and the workers must finish the run and exit by themselves.
`python tests/sharedfs/storm.py RUN_ON_A RUN_ON_B --seed 1 --kills 60` prints the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

PYTHON = sys.executable


@dataclass
class StormResult:
    seconds: float = 0.0
    kills: int = 0
    sigkills: int = 0
    sigterms: int = 0
    workers_started: int = 0
    queue_empty_after_s: float | None = None
    exit_after_queue_empty_s: list[float] = field(default_factory=list)  # per worker alive when it emptied
    stuck: list[str] = field(default_factory=list)  # workers that had to be killed at the end
    exit_codes: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class Worker:
    def __init__(self, run_dir: Path, name: str, shard: str, log: Path):
        self.name = name
        # sh stays pid 1 of the namespace (no exec): the worker is an ordinary process there, so
        # SIGTERM reaches it as on a real node (pid 1 ignores signals it has no handler for yet)
        cmd = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL", "sh", "-c",
               'hostname "$0" && "$@"', name, PYTHON, "-m", "pipe_rules", "work", str(run_dir), "--shard", shard]
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.exited_at: float | None = None

    def worker_pid(self, timeout: float = 30.0) -> int | None:
        """The worker's pid as this (parent) namespace sees it: unshare's grandchild."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    argv = child.cmdline()
                    if argv and argv[0] == PYTHON and "pipe_rules" in argv:
                        return child.pid
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                return None
            if self.proc.poll() is not None:
                return None
            time.sleep(0.01)
        return None

    def signal(self, sig: int) -> bool:
        pid = self.worker_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None and self.exited_at is None:
            self.exited_at = time.monotonic()
            self._log.close()
        return code


def _queue_empty(run_dir: Path) -> bool:
    """No pending and no in-flight token left (the truth on disk, read through mount A)."""
    pending = run_dir / "queue" / "pending"
    for _, _, names in os.walk(pending):
        if names:
            return False
    try:
        return not os.listdir(run_dir / "queue" / "inflight")
    except FileNotFoundError:
        return True


def run_storm(run_a: Path, run_b: Path, shards: int, workers: int, kills: int, seed: int, log_dir: Path,
              exit_deadline_s: float, max_s: float = 600.0, truth: Path | None = None) -> StormResult:
    """`truth`: where to read the queue without a client cache (the sshfs server's folder); default run_a."""
    truth = truth or run_a
    rng = random.Random(seed)
    result = StormResult()
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    live: list[Worker] = []
    done: list[Worker] = []
    counter = 0

    def start(slot: int) -> Worker:
        nonlocal counter
        counter += 1
        run_dir = run_a if counter % 2 else run_b
        name = f"node{seed}x{counter:03d}"
        result.workers_started += 1
        return Worker(run_dir, name, f"shard-{slot % shards:03d}", log_dir / f"{name}.log")

    live = [start(i) for i in range(workers)]
    while result.kills < kills and time.monotonic() - started < max_s:
        time.sleep(rng.uniform(0.02, 0.4))
        for w in list(live):
            if w.poll() is not None:
                live.remove(w)
                done.append(w)
        if not live or _queue_empty(truth):
            break
        victim = rng.choice(live)
        sig = signal.SIGKILL if rng.random() < 0.5 else signal.SIGTERM
        if victim.signal(sig):
            result.kills += 1
            result.sigkills += sig == signal.SIGKILL
            result.sigterms += sig == signal.SIGTERM
        try:
            victim.proc.wait(timeout=60)  # SIGTERM: the worker hands its task back first
        except subprocess.TimeoutExpired:
            result.stuck.append(f"{victim.name} (ignored {signal.Signals(sig).name})")
            victim.proc.kill()
            victim.proc.wait()
        victim.poll()
        live.remove(victim)
        done.append(victim)
        live.append(start(counter))
    if len(live) < workers:  # the kills stopped: a full set of workers finishes the run
        live += [start(counter + i) for i in range(workers - len(live))]
    empty_at = None
    deadline = time.monotonic() + max_s
    while live and time.monotonic() < deadline:
        if empty_at is None and _queue_empty(truth):
            empty_at = time.monotonic()
            result.queue_empty_after_s = round(empty_at - started, 2)
        for w in list(live):
            if w.poll() is not None:
                live.remove(w)
                done.append(w)
                if empty_at is not None:
                    result.exit_after_queue_empty_s.append(round(w.exited_at - empty_at, 2))
        if empty_at is not None and time.monotonic() - empty_at > exit_deadline_s:
            break
        time.sleep(0.05)
    for w in live:  # still running past the deadline: stuck
        result.stuck.append(w.name)
        w.proc.kill()
        w.proc.wait()
        w.poll()
    result.exit_codes = sorted({w.proc.returncode for w in done + live})
    result.seconds = round(time.monotonic() - started, 1)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/storm_logs"))
    args = parser.parse_args()
    print(json.dumps(run_storm(args.run_a, args.run_b, args.shards, args.workers, args.kills, args.seed, args.logs,
                               exit_deadline_s=120).as_dict(), indent=1))
