"""Which owner (species or reaction) each task belongs to, cached in `owner_index.npz`.

The manifest lists task ids, not owners, and reading 100,000 specs for every `status` would take
seconds; so the owner of each task is read from its spec once and kept beside the manifest, as
numpy arrays (sorted task ids, owner positions) that load in milliseconds and map 100,000 queue
token names to owners in one vectorised search. The cache is keyed by the manifest's size and
modification time: restaging refreshes it, reading only the specs of tasks it has not seen. A run
folder that cannot be written (someone else's) still gets its index, just not cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import read_json
from pipe_rules.store.layout import RunLayout

INDEX_NAME = "owner_index.npz"
INDEX_VERSION = 2


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
    info = os.stat(layout.manifest)
    return np.array([INDEX_VERSION, info.st_size, info.st_mtime_ns], dtype=np.int64)


def _read_cached(layout: RunLayout) -> dict | None:
    try:
        with np.load(index_path(layout), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError):
        return None


UNREADABLE = "(spec unreadable)"  # the owner shown for tasks whose spec is corrupt or missing


def _spec_owner(layout: RunLayout, task_id: str) -> str:
    """A corrupt spec (its task ends FAILED_TERMINAL) must not stop `status`: it is counted apart."""
    try:
        spec = read_json(layout.spec(task_id), "task spec")
    except (StateError, OSError):
        return UNREADABLE
    owner = spec.get("owner_key") if isinstance(spec, dict) else None
    return owner if isinstance(owner, str) else UNREADABLE


def _build(task_owner: dict[str, str], aliases: dict[str, tuple[str, str]]) -> OwnerIndex:
    owners = sorted(set(task_owner.values()) | {owner for owner, _ in aliases.values()})
    number = {owner: i for i, owner in enumerate(owners)}
    ids = sorted(task_owner)
    return OwnerIndex(owners, id_array(ids),
                      np.array([number[task_owner[t]] for t in ids], dtype=np.int64),
                      np.array([number[o] for o, _ in aliases.values()], dtype=np.int64),
                      id_array([base for _, base in aliases.values()]))


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
    """The run's owner index, refreshed from the manifest (and new specs) when the manifest changed."""
    try:
        key = _manifest_key(layout)
    except FileNotFoundError:
        return _build({}, {})
    cached = _read_cached(layout)
    if cached is not None and np.array_equal(cached.get("key"), key):
        return OwnerIndex(cached["owners"].tolist(), cached["task_ids"], cached["owner_of"],
                          cached["alias_owner"], cached["alias_base"])
    known: dict[str, str] = {}
    if cached is not None and cached.get("key") is not None and int(cached["key"][0]) == INDEX_VERSION:
        owners = cached["owners"].tolist()
        known = {t.decode(): owners[i] for t, i in zip(cached["task_ids"].tolist(), cached["owner_of"].tolist())}
    manifest = read_json(layout.manifest, "run manifest", "; restage the campaign to rewrite it")
    try:  # the shape staging writes: {"tasks": [[task_id, shard, fingerprint], ...], "aliases": {id: {...}}}
        task_owner = {entry[0]: known.get(entry[0]) or _spec_owner(layout, entry[0]) for entry in manifest["tasks"]}
        aliases = {alias: (str(entry["owner_key"]), str(entry["of"]))
                   for alias, entry in manifest.get("aliases", {}).items()}
    except (TypeError, KeyError, IndexError, AttributeError):
        raise StateError("not the manifest staging writes", path=layout.manifest, field="tasks") from None
    index = _build(task_owner, aliases)
    _save(layout, key, index)
    return index
