"""Which owner (species or reaction) each task belongs to, cached in `owner_index.npz`.

The manifest lists each task's owner; parsing 1,000,000 lines of it for every `status` would take
seconds, so it is kept beside the manifest as numpy arrays (sorted task ids, owner positions) that
load in milliseconds. Task ids are looked up by a 64-bit hash of their bytes (sorted, searched as
integers, then the id itself compared): numpy sorts and searches 1,000,000 byte strings in ~3 s
each, integers in ~0.1 s, so `status` maps a million ledger lines to owners in well under a second. The
cache is keyed by the manifest's size and modification time: restaging refreshes it. A run folder
that cannot be written (someone else's) still gets its index, just not cached.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import temp_name
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import iter_aliases, iter_entries

INDEX_NAME = "owner_index.npz"
INDEX_VERSION = 4


def id_array(values) -> np.ndarray:
    """Task ids as a numpy bytes array: they are ASCII (safe ids), and bytes compare four times
    faster than numpy's unicode strings."""
    try:
        return np.asarray(values, dtype="S").reshape(-1)
    except UnicodeEncodeError:  # not a task id we staged; keep it, it will simply not match
        return np.array([str(v).encode("utf-8", "replace") for v in values], dtype="S").reshape(-1)


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def id_hashes(ids: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each id of a bytes array, the same whatever the array's width (ids hold no
    NUL byte, so the zero words that pad an id are skipped). Eight bytes at a time, splitmix64's mixer."""
    width = -(-max(ids.dtype.itemsize, 1) // 8) * 8
    words = np.ascontiguousarray(ids.astype(f"S{width}")).view(np.uint64).reshape(len(ids), -1)
    h = np.full(len(ids), _MIX[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(words.shape[1]):
            word = words[:, k]
            x = (h ^ word) * _MIX[1]
            x ^= x >> np.uint64(31)
            x *= _MIX[2]
            x ^= x >> np.uint64(29)
            h = np.where(word != 0, x, h)
    return h


@dataclass(frozen=True)
class OwnerIndex:
    owners: list[str]  # distinct owner keys, sorted
    task_ids: np.ndarray  # staged task ids, sorted (bytes)
    owner_of: np.ndarray  # position in `owners` of each task in `task_ids`
    alias_owner: np.ndarray  # deduplicated tasks: their owner's position...
    alias_base: np.ndarray  # ...and the staged task whose result they share
    hashes: np.ndarray  # id_hashes(task_ids), sorted...
    by_hash: np.ndarray  # ...and the position in `task_ids` of each
    key: np.ndarray | None = None  # the manifest's it was built from (_manifest_key): caches of positions check it

    def positions_of(self, task_ids: Sequence[str] | np.ndarray, hashes: np.ndarray | None = None) -> np.ndarray:
        """Position in `task_ids` of each task id, -1 for ids the index does not know. `hashes`:
        their id_hashes, when the caller has them already (the cost ledgers keep theirs)."""
        if not len(task_ids) or not len(self.task_ids):
            return np.full(len(task_ids), -1, dtype=np.int64)
        wanted = id_array(task_ids)
        hashes = id_hashes(wanted) if hashes is None else hashes
        order = np.argsort(hashes)  # searched in order: ~5x faster than 1,000,000 random searches
        found = np.empty(len(hashes), dtype=np.int64)
        found[order] = np.searchsorted(self.hashes, hashes[order])
        at = self.by_hash[np.minimum(found, len(self.hashes) - 1)]
        return np.where(self.task_ids[at] == wanted, at, -1)

    def owners_of(self, task_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Owner position of each task id, -1 for ids the index does not know."""
        at = self.positions_of(task_ids)
        return np.where(at >= 0, self.owner_of[at] if len(self.owner_of) else -1, -1)

    def as_dict(self) -> dict[str, str]:
        """task id -> owner key (staged tasks only)."""
        return {t.decode(): self.owners[i] for t, i in zip(self.task_ids.tolist(), self.owner_of.tolist())}


def index_path(layout: RunLayout) -> Path:
    return layout.root / INDEX_NAME


def _manifest_key(layout: RunLayout) -> np.ndarray:
    path = layout.manifest if layout.manifest.exists() else layout.manifest_v1
    info = os.stat(path)
    aliases = os.stat(layout.aliases).st_size if layout.aliases.exists() else -1
    return np.array([INDEX_VERSION, info.st_size, info.st_mtime_ns, aliases], dtype=np.int64)


def _read_cached(layout: RunLayout) -> dict | None:
    try:
        with np.load(index_path(layout), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError):
        return None


UNREADABLE = "(spec unreadable)"  # the owner shown for tasks whose spec is corrupt or missing
_CHUNK = 100_000


def _build(layout: RunLayout) -> OwnerIndex:
    """From the manifest's owner column, in chunks of numpy arrays (1,000,000 ids in ~40 MB)."""
    number: dict[str, int] = {}
    id_chunks, owner_chunks = [], []
    ids: list[str] = []
    owner_ids: list[int] = []

    def flush() -> None:
        if ids:
            id_chunks.append(id_array(ids))
            owner_chunks.append(np.array(owner_ids, dtype=np.int64))
            ids.clear()
            owner_ids.clear()

    for entry in iter_entries(layout, strict=False):  # status may run while a stager appends
        ids.append(entry.task_id)
        owner_ids.append(number.setdefault(entry.owner or UNREADABLE, len(number)))
        if len(ids) >= _CHUNK:
            flush()
    flush()
    aliases = [(str(alias["owner_key"]), str(alias["of"])) for _, alias in iter_aliases(layout)]
    for owner, _ in aliases:
        number.setdefault(owner, len(number))
    owners = sorted(number)
    rank = np.empty(len(owners), dtype=np.int64)
    rank[[number[o] for o in owners]] = np.arange(len(owners))
    task_ids = np.concatenate(id_chunks) if id_chunks else np.zeros(0, dtype="S1")
    owner_of = rank[np.concatenate(owner_chunks)] if owner_chunks else np.zeros(0, dtype=np.int64)
    order = np.argsort(task_ids, kind="stable")
    task_ids = task_ids[order]
    hashes = id_hashes(task_ids)
    by_hash = np.argsort(hashes, kind="stable")
    return OwnerIndex(owners, task_ids, owner_of[order],
                      np.array([rank[number[o]] for o, _ in aliases], dtype=np.int64),
                      id_array([base for _, base in aliases]), hashes[by_hash], by_hash)


def save_npz(path: Path, **arrays: np.ndarray) -> bool:
    """Write a cache of numpy arrays by temp file + rename (streamed, never a second copy in memory);
    False if the run folder cannot be written (someone else's): the caller answers without a cache."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True


def _save(layout: RunLayout, key: np.ndarray, index: OwnerIndex) -> None:
    save_npz(index_path(layout), key=key, owners=np.array(index.owners, dtype=str).reshape(-1),
             task_ids=index.task_ids, owner_of=index.owner_of, alias_owner=index.alias_owner,
             alias_base=index.alias_base, hashes=index.hashes, by_hash=index.by_hash)


def load_owner_index(layout: RunLayout, previous: OwnerIndex | None = None) -> OwnerIndex:
    """The run's owner index, rebuilt from the manifest when the manifest changed; `previous` (an
    index this process loaded before) is returned as it is while the manifest has not changed."""
    try:
        key = _manifest_key(layout)
    except FileNotFoundError:
        empty = np.zeros(0, dtype=np.int64)
        return OwnerIndex([], id_array([]), empty, empty, id_array([]), np.zeros(0, dtype=np.uint64), empty)
    if previous is not None and previous.key is not None and np.array_equal(previous.key, key):
        return previous
    cached = _read_cached(layout)
    if cached is not None and np.array_equal(cached.get("key"), key):
        return OwnerIndex(cached["owners"].tolist(), cached["task_ids"], cached["owner_of"],
                          cached["alias_owner"], cached["alias_base"], cached["hashes"], cached["by_hash"], key)
    try:
        index = _build(layout)
    except (TypeError, KeyError, IndexError, AttributeError):
        raise StateError("not the manifest staging writes", path=layout.manifest, field="tasks") from None
    index = dataclasses.replace(index, key=key)
    _save(layout, key, index)
    return index
