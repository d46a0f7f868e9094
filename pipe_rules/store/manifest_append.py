"""What a stager needs of the manifest: what it lists already (as numpy columns, ~70 bytes a task),
and appending new tasks in batches under the manifest lock without ever listing a task twice.

A stager lists the tasks whose state it created. A task whose state exists but that no manifest
line names (its stager was killed in between) is listed by the next stager that meets it. Before
each append, the stager reads the lines others appended since its last look, so of two stagers
meeting one task only the first lists it.
"""

from __future__ import annotations

import os

import numpy as np

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.locks import locked
from pipe_rules.store.manifest import Entry, append_entries, iter_aliases, iter_entries
from pipe_rules.store.owner_index import id_array


class Known:
    """The tasks a manifest lists: sorted ids with their fingerprints (32 bytes each), and aliases."""

    def __init__(self, ids: np.ndarray, fps: np.ndarray, aliases: set[str], offset: int):
        order = np.argsort(ids, kind="stable")
        self.ids, self.fps = ids[order], fps[order]
        self.aliases = aliases
        self.offset = offset  # bytes of manifest.tsv these came from
        self.count = len(ids)

    @classmethod
    def of(cls, layout: RunLayout) -> Known:
        try:
            offset = os.stat(layout.manifest).st_size
        except FileNotFoundError:
            offset = 0
        ids, fps, chunk_ids, chunk_fps = [], [], [], []
        for entry in iter_entries(layout):
            chunk_ids.append(entry.task_id)
            chunk_fps.append(bytes.fromhex(entry.fingerprint))
            if len(chunk_ids) >= 100_000:
                ids.append(id_array(chunk_ids))
                fps.append(np.array(chunk_fps, dtype="S32"))
                chunk_ids, chunk_fps = [], []
        ids.append(id_array(chunk_ids))
        fps.append(np.array(chunk_fps, dtype="S32"))
        aliases = {alias for alias, _ in iter_aliases(layout)}
        return cls(np.concatenate(ids), np.concatenate(fps), aliases, offset)

    def _at(self, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        return at, self.ids[at] == wanted

    def fingerprints(self, task_ids: list[str]) -> list[bytes | None]:
        """The staged fingerprint of each id, None for ids not staged yet."""
        if not self.count or not task_ids:
            return [None] * len(task_ids)
        at, found = self._at(id_array(task_ids))
        # numpy drops the trailing NUL bytes of an S32 value: pad them back
        return [bytes(self.fps[i]).ljust(32, b"\0") if hit else None for i, hit in zip(at.tolist(), found.tolist())]

    def has(self, task_id: str) -> bool:
        return bool(self.count) and bool(self._at(id_array([task_id]))[1][0])


class ManifestWriter:
    """Batches a stager's new entries and aliases; `flush` appends them under the manifest lock."""

    def __init__(self, layout: RunLayout, lock_mode: str, known: Known):
        self.layout = layout
        self.lock_mode = lock_mode
        self.known = known
        self.offset = known.offset
        self.count = known.count
        self.others: set[str] = set()  # listed by other stagers since `known` was read
        self._entries: list[Entry] = []
        self._aliases: list[tuple[str, dict]] = []

    def add(self, entry: Entry) -> None:
        """A task this stager created, or found staged but unlisted (its stager was killed)."""
        self._entries.append(entry)

    def alias(self, alias_id: str, alias: dict) -> None:
        if alias_id not in self.known.aliases:
            self._aliases.append((alias_id, alias))

    def _read_others(self) -> None:
        try:
            with open(self.layout.manifest, "rb") as handle:
                handle.seek(self.offset)
                tail = handle.read()
        except FileNotFoundError:
            return
        end = tail.rfind(b"\n") + 1
        for line in tail[:end].splitlines():
            self.others.add(line.split(b"\t", 1)[0].decode())
            self.count += 1
        self.offset += end

    def flush(self) -> None:
        if not self._entries and not self._aliases:
            return
        with locked(self.layout.manifest_lock, self.lock_mode):
            self._read_others()
            mine = [entry for entry in self._entries if entry.task_id not in self.others]
            append_entries(self.layout, mine, self._aliases)
            self.offset = os.stat(self.layout.manifest).st_size if mine else self.offset
            self.count += len(mine)
        self._entries, self._aliases = [], []

    def close(self) -> int:
        """Flush what is left; the number of tasks the manifest lists now."""
        self.flush()
        return self.count
