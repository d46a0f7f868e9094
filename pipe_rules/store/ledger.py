"""The per-worker cost ledgers: `costs/<worker>.tsv`, one line per task attempt.

A worker appends the line right after the attempt's result.json (one write on an open file, a few
microseconds), so `status` can sum CPU-hours while a run works without reading any result.json,
and the progress display can count completed attempts without listing 1,000,000 queue tokens;
`CostTally` reads the ledgers back as columns. The last column, the attempt's outcome, was added
in run schema 2: ledgers without it still parse (their outcome is unknown).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LEDGER_DIR = "costs"
_FIELDS = ("task_id", "attempt", "cores", "wall_s", "cpu_s", "peak_rss_mb", "outcome")
_OLD_WIDTH = 6  # ledgers of schema 1: no outcome


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
                   resources: dict, outcome: str = "") -> bool:
    """Append one line for this attempt; best effort (a full disk must not fail the task). `outcome`:
    the state the worker is about to record (COMPLETED, FAILED_ESS...)."""
    line = "\t".join((task_id, str(attempt), str(resources.get("cores", 0)), repr(float(timings["wall_s"])),
                      repr(float(timings.get("cpu_s", 0.0))), f"{resources.get('peak_rss_mb') or 0.0:.3f}",
                      outcome))
    try:
        os.write(_ledger_fd(run_root, worker_id), (line + "\n").encode())
    except OSError:
        return False
    return True


class CostTally:
    """The workers' ledgers as columns; each refresh reads only what was appended since the last.

    Row i of `task_ids()` and `values()` (cores, wall_s, cpu_s, peak_rss_mb) describe one attempt.
    Parsed with numpy (100,000 lines in about a tenth of a second) and cached in
    `costs/tally-cache-v4.npz` with the read position in each ledger, so the next `status` reads only
    the lines appended since: the ledgers only ever grow, and a ledger shorter than its cached
    position invalidates the cache."""

    CACHE = "tally-cache-v4.npz"

    def __init__(self, run_root: Path, cache: bool = True):
        self.folder = ledger_dir(run_root)
        self.cache = cache
        self._offsets: dict[str, int] = {}
        self._ids: list = []  # numpy unicode arrays, concatenated on demand
        self._blocks: list = []  # numpy arrays (n, 4)
        self._done: list = []  # numpy bool arrays: the row's outcome is COMPLETED
        self._hashes: list = []  # owner_index.id_hashes of the rows' task ids (computed once, cached)
        self.completed = 0  # attempts whose line says COMPLETED
        self.unknown_outcomes = 0  # lines of schema-1 ledgers
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

    def id_hashes(self):
        """owner_index.id_hashes(task_ids()), kept with the rows so `status` never hashes a row twice."""
        import numpy as np

        if len(self._hashes) != 1:
            self._hashes = [np.concatenate(self._hashes) if self._hashes else np.zeros(0, dtype=np.uint64)]
        return self._hashes[0]

    def completed_rows(self):
        """A bool per row of `task_ids()`: that attempt ended COMPLETED."""
        import numpy as np

        if len(self._done) != 1:
            self._done = [np.concatenate(self._done) if self._done else np.zeros(0, dtype=bool)]
        return self._done[0]

    def _load_cache(self, names: list[str]) -> None:
        import numpy as np

        try:
            with np.load(self.folder / self.CACHE, allow_pickle=False) as data:
                files, offsets = data["files"].tolist(), data["offsets"].tolist()
                ids, values, done = data["task_ids"], data["values"], data["completed_rows"]
                hashes = data["id_hashes"]
                completed, unknown = (int(v) for v in data["outcomes"])
        except (OSError, ValueError, KeyError):
            return
        for name, offset in zip(files, offsets):
            try:
                if os.stat(self.folder / name).st_size < offset:
                    return  # a ledger was replaced: read everything again
            except FileNotFoundError:
                return
        self._offsets = dict(zip(files, offsets))
        self._ids, self._blocks, self._done, self._hashes = [ids], [values], [done], [hashes]
        self.completed, self.unknown_outcomes = completed, unknown
        self._rows_saved = len(values)

    def _save_cache(self) -> None:
        import numpy as np

        path = self.folder / self.CACHE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, files=np.array(list(self._offsets), dtype=str).reshape(-1),
                         offsets=np.array(list(self._offsets.values()), dtype=np.int64),
                         task_ids=self.task_ids(), values=self.values(), completed_rows=self.completed_rows(),
                         id_hashes=self.id_hashes(),
                         outcomes=np.array([self.completed, self.unknown_outcomes], dtype=np.int64))
            os.replace(tmp, path)
            self._rows_saved = len(self.values())
        except OSError:  # someone else's run folder: no cache, same answer
            try:
                os.unlink(tmp)
            except OSError:
                pass

    READ_BLOCK = 4 << 20  # bytes parsed at a time (~60,000 lines): a 1,000,000-line ledger read at once
    # made ~7 million Python strings, ~400 MB

    def _read(self, name: str) -> None:
        offset = self._offsets.get(name, 0)
        try:
            with open(self.folder / name, "rb") as handle:
                handle.seek(offset)
                rest = b""
                while True:
                    block = handle.read(self.READ_BLOCK)
                    if not block:
                        break
                    chunk = rest + block
                    end = chunk.rfind(b"\n") + 1  # a line still being written is read next time
                    rest = chunk[end:]
                    if end:
                        self._parse(chunk[:end].decode(errors="replace"))
                        offset += end
                        self._offsets[name] = offset
        except OSError:
            return

    def _parse(self, text: str) -> None:
        import numpy as np  # here, not at the top: workers write ledgers and never import numpy for it

        from pipe_rules.store.owner_index import id_array, id_hashes

        width = text.split("\n", 1)[0].count("\t") + 1  # a ledger is written by one worker, in one width
        fields = text.replace("\n", "\t").split("\t")
        fields.pop()  # after the last newline
        try:
            if width not in (len(_FIELDS), _OLD_WIDTH):
                raise ValueError(width)
            table = np.array(fields, dtype=object).reshape(-1, width)
            numbers = table[:, 2:6].astype(float)
            ids = table[:, 0]
            outcomes = table[:, 6].tolist() if width == len(_FIELDS) else [None] * len(ids)
        except ValueError:  # a damaged line: parse line by line, skipping what does not parse
            kept, rows, outcomes = [], [], []
            for line in text.splitlines():
                parts = line.split("\t")
                try:
                    row = [float(v) for v in parts[2:6]]
                except ValueError:
                    continue
                if len(parts) in (len(_FIELDS), _OLD_WIDTH) and len(row) == 4:
                    kept.append(parts[0])
                    rows.append(row)
                    outcomes.append(parts[6] if len(parts) == len(_FIELDS) else None)
            ids, numbers = np.array(kept, dtype=object), np.array(rows, dtype=float).reshape(-1, 4)
        done = np.array([o == "COMPLETED" for o in outcomes], dtype=bool)
        self.completed += int(done.sum())
        self.unknown_outcomes += outcomes.count(None)
        self._ids.append(id_array(ids))
        self._hashes.append(id_hashes(self._ids[-1]))
        self._blocks.append(numbers)
        self._done.append(done)
