"""What the cost ledgers say, per task and per owner, in memory that does not grow with the ledgers.

`status` needs, of 1,000,000 ledger lines: which tasks have a COMPLETED line, and per owner (and
for the run) the attempts, CPU-hours both ways, summed task time and largest peak. That is one flag
per staged task and five numbers per owner, whatever the number of lines, so this keeps only that:
each new line is mapped to its task through the owner index once, then dropped. It is cached in
`costs/ledger-summary-v2.npz` with each ledger's inode, read position, size, modification time
and a checksum of the bytes before that position: the next `status` skips a ledger whose size and
time did not move, reads only what was appended to one that grew, and starts again from the
ledgers' first bytes when one shrank, was replaced or rewritten, or disappeared (or when the
manifest, hence the index, changed). A last line without its newline (a worker writing it, or
killed in the middle of it) is read once it is whole.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from pipe_rules.store.ledger import ledger_dir, ledger_names, parse_lines, read_whole_lines
from pipe_rules.store.owner_index import OwnerIndex, save_npz

CACHE = "ledger-summary-v2.npz"
# earlier versions' caches: row by row (55 MB at 1,000,000 lines); v1 kept inodes as int64, which
# GlusterFS's 64-bit inode numbers overflow
OLD_CACHES = ("tally-cache-v4.npz", "ledger-summary-v1.npz")
_TAIL = 256  # bytes before a read position whose checksum tells an appended ledger from a rewritten one
COST_ROWS = ("attempts", "cpu_hours", "cpu_hours_used", "task_wall_s", "peak_rss_mb")


class LedgerSummary:
    """`done` (a bool per task of the index: it has a COMPLETED line), `cost` (COST_ROWS x owners)
    and `totals` (COST_ROWS for the run, unknown task ids included), `unknown_done` (COMPLETED lines
    of ids the index does not know) and `unknown_outcomes` (lines of schema-1 ledgers)."""

    def __init__(self, run_root: Path, cache: bool = True, block: int | None = None):
        self.folder = ledger_dir(run_root)
        self.cache = cache
        self.block = block
        self._key: np.ndarray | None = None
        self._files: dict[str, list[int]] = {}
        self._loaded = False

    def _reset(self, index: OwnerIndex) -> None:
        self._key = _key_of(index)
        self._files = {}  # name: [inode, offset, size, mtime_ns, crc of the bytes before offset]
        self.done = np.zeros(len(index.task_ids), dtype=bool)
        self.cost = np.zeros((len(COST_ROWS), len(index.owners)))
        self.totals = np.zeros(len(COST_ROWS))
        self.unknown_done = 0
        self.unknown_outcomes = 0

    @property
    def attempts(self) -> int:
        return int(self.totals[0])

    def refresh(self, index: OwnerIndex) -> LedgerSummary:
        """Bring the summary up to what the ledgers hold now."""
        if self._key is None or not np.array_equal(self._key, _key_of(index)):
            self._reset(index)
            if self.cache and not self._loaded:
                self._load()
            self._loaded = True
        names = ledger_names(self.folder.parent)
        stats = {}
        for name in names:
            try:
                stats[name] = os.stat(self.folder / name)
            except FileNotFoundError:
                continue
        if any(name not in stats or not self._same_file(name, stats[name]) for name in self._files):
            self._reset(index)  # a ledger shrank, was replaced or rewritten, or went: read all again
        changed = False
        for name, info in stats.items():
            known = self._files.get(name)
            if known is not None and known[2:4] == [info.st_size, info.st_mtime_ns]:
                continue
            offset = known[1] if known else 0
            for offset, data in read_whole_lines(self.folder / name, offset, self.block):
                self._add(index, data)
            self._files[name] = [info.st_ino, offset, info.st_size, info.st_mtime_ns, self._crc(name, offset)]
            changed = True
        if changed and self.cache:
            self._save()
        return self

    def _same_file(self, name: str, info: os.stat_result) -> bool:
        inode, offset, size, mtime_ns, crc = self._files[name]
        if [size, mtime_ns] == [info.st_size, info.st_mtime_ns]:
            return inode == info.st_ino
        return inode == info.st_ino and info.st_size >= offset and self._crc(name, offset) == crc

    def _crc(self, name: str, offset: int) -> int:
        try:
            with open(self.folder / name, "rb") as handle:
                start = max(0, offset - _TAIL)
                handle.seek(start)
                return zlib.crc32(handle.read(offset - start))
        except OSError:
            return -1

    def _add(self, index: OwnerIndex, data: bytes) -> None:
        ids, numbers, done, unknown = parse_lines(data)
        self.unknown_outcomes += unknown
        at = index.positions_of(ids)
        known = at >= 0
        self.done[at[done & known]] = True
        self.unknown_done += int((done & ~known).sum())
        cores, wall, cpu, peak = numbers.T
        weights = [None, cores * wall / 3600.0, cpu / 3600.0, wall]
        owners = index.owner_of[at[known]]
        n = len(index.owners)
        for row, w in enumerate(weights):
            self.cost[row] += np.bincount(owners, weights=None if w is None else w[known], minlength=n)
            self.totals[row] += len(ids) if w is None else float(w.sum())
        np.maximum.at(self.cost[4], owners, peak[known])
        if len(peak):
            self.totals[4] = max(self.totals[4], float(peak.max()))

    def _load(self) -> None:
        try:
            with np.load(self.folder / CACHE, allow_pickle=False) as data:
                if not np.array_equal(data["key"], self._key):
                    return
                names, inodes, files = data["names"].tolist(), data["inodes"].tolist(), data["files"].tolist()
                done, cost, totals = data["done"], data["cost"], data["totals"]
                self.unknown_done, self.unknown_outcomes = (int(v) for v in data["unknown"])
        except (OSError, ValueError, KeyError):
            return
        if done.shape == self.done.shape and cost.shape == self.cost.shape:
            self._files = {name: [inode, *rest] for name, inode, rest in zip(names, inodes, files)}
            self.done, self.cost, self.totals = done, cost, totals

    def _save(self) -> None:
        if not save_npz(self.folder / CACHE, key=self._key, names=np.array(list(self._files), dtype=str).reshape(-1),
                        inodes=np.array([f[0] for f in self._files.values()], dtype=np.uint64),
                        files=np.array([f[1:] for f in self._files.values()], dtype=np.int64).reshape(-1, 4),
                        done=self.done, cost=self.cost, totals=self.totals,
                        unknown=np.array([self.unknown_done, self.unknown_outcomes], dtype=np.int64)):
            return  # someone else's run folder: no cache, same answer
        for old in OLD_CACHES:
            try:
                os.unlink(self.folder / old)
            except OSError:
                pass


def _key_of(index: OwnerIndex) -> np.ndarray:
    """Which index the positions in `done` refer to: the manifest it was built from, and its size."""
    key = index.key if index.key is not None else np.zeros(0, dtype=np.int64)
    return np.concatenate([key, np.array([len(index.task_ids), len(index.owners)], dtype=np.int64)])
