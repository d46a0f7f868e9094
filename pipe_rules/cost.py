"""What each task attempt cost: CPU-hours and the peak memory of that task alone.

A worker runs many tasks in one process, so the process's lifetime peak (ru_maxrss) says nothing
about one task. On Linux, writing 5 to /proc/self/clear_refs resets the peak to the current RSS;
VmHWM in /proc/self/status then holds the peak since that reset, i.e. of this task (the worker's
own baseline included: `rss_end_mb`, the worker's memory after the task, is about that baseline). Elsewhere the lifetime peak is
recorded and marked `peak_rss_scope: process`. Measuring costs about 30 microseconds per task.

CPU-hours are reported two ways: `cpu_hours` = cores x wall time (what the allocation paid for)
and `cpu_hours_used` = measured CPU time of the worker and its child processes.

Workers also append one line per attempt to `costs/<worker>.tsv` in the run folder, right after
its result.json (one write on an open file, a few microseconds), so `status` can sum CPU-hours
while a run works without reading any result.json.
"""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEDGER_DIR = "costs"
_FIELDS = ("task_id", "attempt", "cores", "wall_s", "cpu_s", "peak_rss_mb")


# --- measuring one task ---------------------------------------------------------------------

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


# --- the per-worker ledger ---------------------------------------------------------------------

_ledger: dict[str, tuple] = {}  # "open": ((run root, worker id), pid, fd): one worker at a time per process


def ledger_dir(run_root: Path) -> Path:
    return Path(run_root) / LEDGER_DIR


def _ledger_fd(run_root: Path, worker_id: str) -> int:
    """The open ledger of this worker; the previous one (another run or worker id) is closed, so a
    long-lived host process that runs many workers keeps one descriptor, not one per worker."""
    key = (str(run_root), worker_id)
    held = _ledger.get("open")
    if held and held[0] == key and held[1] == os.getpid():
        return held[2]
    if held and held[1] == os.getpid():
        _ledger.pop("open")
        try:
            os.close(held[2])
        except OSError:
            pass
    folder = ledger_dir(run_root)
    folder.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", worker_id) + ".tsv"
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    _ledger["open"] = (key, os.getpid(), fd)
    return fd


def record_attempt(run_root: Path, worker_id: str, task_id: str, attempt: int, timings: dict,
                   resources: dict) -> bool:
    """Append one line for this attempt; best effort (a full disk must not fail the task)."""
    line = "\t".join((task_id, str(attempt), str(resources.get("cores", 0)), repr(float(timings["wall_s"])),
                      repr(float(timings.get("cpu_s", 0.0))), f"{resources.get('peak_rss_mb') or 0.0:.3f}"))
    try:
        os.write(_ledger_fd(run_root, worker_id), (line + "\n").encode())
    except OSError:
        return False
    return True


# --- summing ---------------------------------------------------------------------------------

@dataclass
class CostSummary:
    """Sum over attempts. `cpu_hours` = cores x wall time; `cpu_hours_used` = measured CPU time."""

    attempts: int = 0
    cpu_hours: float = 0.0
    cpu_hours_used: float = 0.0
    task_wall_s: float = 0.0
    peak_rss_mb: float | None = None

    def add(self, cores: float, wall_s: float, cpu_s: float | None, peak_rss_mb: float | None) -> None:
        self.attempts += 1
        self.cpu_hours += cores * wall_s / 3600.0
        self.cpu_hours_used += (cpu_s or 0.0) / 3600.0
        self.task_wall_s += wall_s
        if peak_rss_mb:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, peak_rss_mb)

    def merge(self, other: CostSummary) -> None:
        self.attempts += other.attempts
        self.cpu_hours += other.cpu_hours
        self.cpu_hours_used += other.cpu_hours_used
        self.task_wall_s += other.task_wall_s
        if other.peak_rss_mb:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, other.peak_rss_mb)

    def as_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "cpu_hours": self.cpu_hours, "cpu_hours_used": self.cpu_hours_used,
                "task_wall_s": self.task_wall_s, "peak_rss_mb": self.peak_rss_mb}


def add_result(summary: CostSummary, result: dict) -> None:
    """Add one result.json; results written before cost accounting lack `cpu_hours` but have the rest."""
    timings, resources = result.get("timings") or {}, result.get("resources") or {}
    summary.add(resources.get("cores") or 0, timings.get("wall_s") or 0.0, timings.get("cpu_s"),
                resources.get("peak_rss_mb"))


class CostTally:
    """The workers' ledgers as columns; each refresh reads only what was appended since the last.

    Row i of `task_ids()` and `values()` (cores, wall_s, cpu_s, peak_rss_mb) describe one attempt.
    Parsed with numpy (100,000 lines in about a tenth of a second) and cached in
    `costs/tally-cache-v1.npz` with the read position in each ledger, so the next `status` reads only
    the lines appended since: the ledgers only ever grow, and a ledger shorter than its cached
    position invalidates the cache."""

    CACHE = "tally-cache-v1.npz"

    def __init__(self, run_root: Path, cache: bool = True):
        self.folder = ledger_dir(run_root)
        self.cache = cache
        self._offsets: dict[str, int] = {}
        self._ids: list = []  # numpy unicode arrays, concatenated on demand
        self._blocks: list = []  # numpy arrays (n, 4)
        self._loaded = False
        self._rows_saved = 0

    def refresh(self) -> CostTally:
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(".tsv"))
        except FileNotFoundError:
            return self
        if self.cache and not self._loaded:
            self._load_cache(names)
        self._loaded = True
        for name in names:
            self._read(name)
        rows = len(self.values())
        if self.cache and rows - self._rows_saved >= max(1000, self._rows_saved // 10):
            self._save_cache()
        return self

    def task_ids(self):
        import numpy as np

        if len(self._ids) != 1:
            self._ids = [np.concatenate(self._ids) if self._ids else np.zeros(0, dtype="S1")]
        return self._ids[0]

    def values(self):
        import numpy as np

        if len(self._blocks) != 1:
            self._blocks = [np.concatenate(self._blocks) if self._blocks else np.zeros((0, 4))]
        return self._blocks[0]

    def _load_cache(self, names: list[str]) -> None:
        import numpy as np

        try:
            with np.load(self.folder / self.CACHE, allow_pickle=False) as data:
                files, offsets = data["files"].tolist(), data["offsets"].tolist()
                ids, values = data["task_ids"], data["values"]
        except (OSError, ValueError, KeyError):
            return
        for name, offset in zip(files, offsets):
            try:
                if os.stat(self.folder / name).st_size < offset:
                    return  # a ledger was replaced: read everything again
            except FileNotFoundError:
                return
        self._offsets = dict(zip(files, offsets))
        self._ids, self._blocks = [ids], [values]
        self._rows_saved = len(values)

    def _save_cache(self) -> None:
        import numpy as np

        path = self.folder / self.CACHE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, files=np.array(list(self._offsets), dtype=str).reshape(-1),
                         offsets=np.array(list(self._offsets.values()), dtype=np.int64),
                         task_ids=self.task_ids(), values=self.values())
            os.replace(tmp, path)
            self._rows_saved = len(self.values())
        except OSError:  # someone else's run folder: no cache, same answer
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _read(self, name: str) -> None:
        offset = self._offsets.get(name, 0)
        try:
            with open(self.folder / name, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        self._offsets[name] = offset + end
        if end:
            self._parse(chunk[:end].decode(errors="replace"))

    def _parse(self, text: str) -> None:
        import numpy as np

        from .owner_index import id_array

        fields = text.replace("\n", "\t").split("\t")
        fields.pop()  # after the last newline
        try:
            table = np.array(fields, dtype=object).reshape(-1, len(_FIELDS))
            numbers = table[:, 2:].astype(float)
            ids = table[:, 0]
        except ValueError:  # a damaged line: parse line by line, skipping what does not parse
            kept, rows = [], []
            for line in text.splitlines():
                parts = line.split("\t")
                try:
                    row = [float(v) for v in parts[2:]]
                except ValueError:
                    continue
                if len(parts) == len(_FIELDS):
                    kept.append(parts[0])
                    rows.append(row)
            ids, numbers = np.array(kept, dtype=object), np.array(rows, dtype=float).reshape(-1, len(_FIELDS) - 2)
        self._ids.append(id_array(ids))
        self._blocks.append(numbers)
