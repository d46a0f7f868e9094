"""The per-worker cost ledgers: `costs/<worker>.tsv`, one line per task attempt.

A worker appends the line right after the attempt's result.json (one write on an open file, a few
microseconds), so `status` can sum CPU-hours while a run works without reading any result.json,
and the progress display can count completed attempts without listing 1,000,000 queue tokens;
`parse_lines` reads them back as columns (store/ledger_summary.py keeps what `status` needs of
them), `LineCounts` counts their COMPLETED lines. The last column, the attempt's outcome, was added
in run schema 2: ledgers without it still parse (their outcome is unknown).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
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


READ_BLOCK = 4 << 20  # bytes parsed at a time (~60,000 lines): memory stays flat however long a ledger is


def ledger_names(run_root: Path) -> list[str]:
    try:
        return sorted(n for n in os.listdir(ledger_dir(run_root)) if n.endswith(".tsv"))
    except FileNotFoundError:
        return []


def read_whole_lines(path: Path, offset: int, block: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(offset after, bytes) of the whole lines after `offset`, a block at a time; a last line
    without its newline (a worker writing it now, or killed in the middle) is left for the next read."""
    block = block or READ_BLOCK
    try:
        handle = open(path, "rb")
    except OSError:
        return
    with handle:
        handle.seek(offset)
        rest = b""
        while True:
            data = handle.read(block)
            if not data:
                return
            chunk = rest + data
            end = chunk.rfind(b"\n") + 1
            rest = chunk[end:]
            if end:
                offset += end
                yield offset, chunk[:end]


def _all_of_width(raw, width: int) -> bool:
    """Every line of `raw` (bytes as uint8, whole lines) has `width` fields (vectorised: ~10 ms per 4 MB)."""
    import numpy as np

    tabs_before = np.searchsorted(np.flatnonzero(raw == 9), np.flatnonzero(raw == 10))
    return bool((np.diff(tabs_before, prepend=0) == width - 1).all())


_ID_WIDTH = 128  # bytes of a task id numpy's parser keeps; a longer one is parsed the slow way
_ROW = [("task_id", f"S{_ID_WIDTH}"), ("cores", "f8"), ("wall_s", "f8"), ("cpu_s", "f8"), ("peak_rss_mb", "f8"),
        ("outcome", "S16")]


def _columns(data: bytes):
    """Lines of 7 fields by numpy's C parser, every column at once: no Python object per field
    (twice as fast as splitting). ValueError if a field does not parse or an id may be cut."""
    import numpy as np

    rows = np.loadtxt(io.BytesIO(data), delimiter="\t", usecols=(0, 2, 3, 4, 5, 6), dtype=_ROW, ndmin=1,
                      comments=None, encoding="latin-1")
    longest = int(np.char.str_len(rows["task_id"]).max()) if len(rows) else 1
    if longest >= _ID_WIDTH:
        raise ValueError(longest)
    numbers = np.column_stack([rows[name] for name in ("cores", "wall_s", "cpu_s", "peak_rss_mb")])
    return rows["task_id"].astype(f"S{longest}"), numbers, rows["outcome"] == b"COMPLETED"


def parse_lines(data: bytes):
    """Whole ledger lines as columns: (task ids (numpy bytes), numbers (n, 4: cores, wall_s, cpu_s,
    peak_rss_mb), completed (bool per line), lines without an outcome (schema 1)). A damaged line
    (a field count or a number that does not parse) is skipped."""
    import numpy as np  # here, not at the top: workers write ledgers and never import numpy for it

    from pipe_rules.store.owner_index import id_array

    width = data[:data.find(b"\n")].count(b"\t") + 1  # a ledger is written by one worker, in one width
    try:
        if width not in (len(_FIELDS), _OLD_WIDTH) or not _all_of_width(np.frombuffer(data, dtype=np.uint8), width):
            raise ValueError(width)
        if width == len(_FIELDS):
            ids, numbers, done = _columns(data)
            unknown = 0
        else:
            numbers = np.loadtxt(io.BytesIO(data), delimiter="\t", usecols=(2, 3, 4, 5), ndmin=2, comments=None,
                                 encoding="latin-1")
            ids = data.replace(b"\n", b"\t").split(b"\t")[0:-1:width]
            done, unknown = np.zeros(len(ids), dtype=bool), len(ids)
            if len(numbers) != len(ids):
                raise ValueError(len(numbers))
    except ValueError:  # a damaged line: parse line by line, skipping what does not parse
        text = data.decode(errors="replace")
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
        unknown = outcomes.count(None)
    return id_array(ids), numbers, np.asarray(done, dtype=bool), unknown


class LineCounts:
    """COMPLETED lines in the ledgers (attempts, not tasks), counted without parsing or keeping a
    line: what the progress display polls every second. Each refresh reads only what was appended
    since the last; a ledger that shrank or was replaced is counted again from its start."""

    def __init__(self, run_root: Path):
        self.root = Path(run_root)
        self._files: dict[str, tuple[int, int, int, int]] = {}  # name: (inode, read up to, completed, schema-1 lines)

    @property
    def completed(self) -> int:
        return sum(f[2] for f in self._files.values())

    @property
    def unknown_outcomes(self) -> int:
        return sum(f[3] for f in self._files.values())

    def refresh(self) -> LineCounts:
        names = ledger_names(self.root)
        self._files = {n: f for n, f in self._files.items() if n in names}
        for name in names:
            path = ledger_dir(self.root) / name
            try:
                info = os.stat(path)
            except FileNotFoundError:
                self._files.pop(name, None)
                continue
            inode, offset, completed, unknown = self._files.get(name, (info.st_ino, 0, 0, 0))
            if inode != info.st_ino or info.st_size < offset:
                offset, completed, unknown = 0, 0, 0
            for offset, data in read_whole_lines(path, offset):
                lines, tabs = data.count(b"\n"), data.count(b"\t")
                if tabs == (len(_FIELDS) - 1) * lines:  # every line has its outcome
                    completed += data.count(b"\tCOMPLETED\n")
                else:
                    for line in data.splitlines():
                        width = line.count(b"\t") + 1
                        completed += width == len(_FIELDS) and line.endswith(b"\tCOMPLETED")
                        unknown += width == _OLD_WIDTH
            self._files[name] = (info.st_ino, offset, completed, unknown)
        return self
