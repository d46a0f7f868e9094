"""Which owner (species or reaction) each task belongs to, cached in `owner_index.npz`.

The manifest lists each task's owner; parsing 1,000,000 lines of it for every `status` would take
seconds, so it is kept beside the manifest as numpy arrays (sorted task ids, owner positions) that
load in milliseconds and map 100,000 queue token names to owners in one vectorised search. The
cache is keyed by the manifest's size and modification time: restaging refreshes it. A run folder
that cannot be written (someone else's) still gets its index, just not cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import iter_aliases, iter_entries

INDEX_NAME = "owner_index.npz"
INDEX_VERSION = 3


def id_array(values) -> np.ndarray:
    """Task ids as a numpy bytes array: they are ASCII (safe ids), and bytes compare four times
    faster than numpy's unicode strings."""
    try:
        return np.asarray(values, dtype="S").reshape(-1)
    except UnicodeEncodeError:  # not a task id we staged; keep it, it will simply not match
        return np.array([str(v).encode("utf-8", "replace") for v in values], dtype="S").reshape(-1)


@dataclass(frozen=True)
class OwnerIndex:
    owners: list[str]  # distinct owner keys, sorted
    task_ids: np.ndarray  # staged task ids, sorted (bytes)
    owner_of: np.ndarray  # position in `owners` of each task in `task_ids`
    alias_owner: np.ndarray  # deduplicated tasks: their owner's position...
    alias_base: np.ndarray  # ...and the staged task whose result they share

    def owners_of(self, task_ids: Sequence[str]) -> np.ndarray:
        """Owner position of each task id, -1 for ids the index does not know."""
        if not len(task_ids) or not len(self.task_ids):
            return np.full(len(task_ids), -1, dtype=np.int64)
        wanted = id_array(task_ids)
        at = np.minimum(np.searchsorted(self.task_ids, wanted), len(self.task_ids) - 1)
        return np.where(self.task_ids[at] == wanted, self.owner_of[at], -1)

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
    return OwnerIndex(owners, task_ids[order], owner_of[order],
                      np.array([rank[number[o]] for o, _ in aliases], dtype=np.int64),
                      id_array([base for _, base in aliases]))


def _save(layout: RunLayout, key: np.ndarray, index: OwnerIndex) -> None:
    path = index_path(layout)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, key=key, owners=np.array(index.owners, dtype=str).reshape(-1), task_ids=index.task_ids,
                     owner_of=index.owner_of, alias_owner=index.alias_owner, alias_base=index.alias_base)
        os.replace(tmp, path)
    except OSError:  # read-only run folder: answer anyway
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load_owner_index(layout: RunLayout) -> OwnerIndex:
    """The run's owner index, rebuilt from the manifest when the manifest changed."""
    try:
        key = _manifest_key(layout)
    except FileNotFoundError:
        return OwnerIndex([], id_array([]), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), id_array([]))
    cached = _read_cached(layout)
    if cached is not None and np.array_equal(cached.get("key"), key):
        return OwnerIndex(cached["owners"].tolist(), cached["task_ids"], cached["owner_of"],
                          cached["alias_owner"], cached["alias_base"])
    try:
        index = _build(layout)
    except (TypeError, KeyError, IndexError, AttributeError):
        raise StateError("not the manifest staging writes", path=layout.manifest, field="tasks") from None
    _save(layout, key, index)
    return index
