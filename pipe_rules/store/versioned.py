"""Documents that stay correct when several clients of a shared filesystem write them: one file per version.

A document `stem` in `folder` is stored as `stem.<generation>.json`, and the current version is the
highest generation present. A write is a compare-and-set: the new version is hard-linked to the
name of generation g+1, which succeeds for exactly one writer (link is exclusive on every
filesystem measured, across client mounts too), so two writers that both read generation g cannot
both commit, with or without a lock that excludes them. A writer that stalled past its turn (its
lock broken, its lease gone) finds its generation taken and writes nothing: the generation is its
fencing token.

Why not one file replaced by rename: a stalled writer's rename lands whenever it wakes up, and
through a second GlusterFS mount a replaced file's old content stays visible for about a second
(measured), so a locked read-modify-write there reads stale data. A name here is written once and
never changes, so no client can see an old content under it. Listings may lag (sshfs: ~20 s), so
the current version is found by listing and then probing the next names directly (a lookup by
name is fresh on both rigs). Superseded versions are removed once they have been superseded for
KEEP_SUPERSEDED_S: the run record's by later writers (`prune`); a task state's only by its own
worker, and only its heartbeat versions (`remove_version`, see store/lifecycle.py), so that a
writer that knows its base can commit with one exclusive create and nothing else (`commit_next`).
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

from pipe_rules.store.fsio import compact_json, create_new, read_bytes as read_file, vanished

_RETRIES_VANISHED = 50
KEEP_SUPERSEDED_S = 120.0  # > the longest listing lag of a shared filesystem (sshfs: ~20 s)


def _gen_of(stem: str, name: str) -> int | None:
    if name == f"{stem}.json":  # written before versions existed: generation 0
        return 0
    if name.startswith(f"{stem}.") and name.endswith(".json"):
        middle = name[len(stem) + 1:-5]
        if middle.isdigit():
            return int(middle)
    return None


def path_of(folder: Path, stem: str, generation: int) -> Path:
    return folder / (f"{stem}.json" if generation == 0 else f"{stem}.{generation}.json")


def generations(folder: Path, stem: str) -> list[int]:
    """Generations listed in `folder` (may lag behind other clients' writes), ascending."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(g for g in (_gen_of(stem, n) for n in names) if g is not None)


def current(folder: Path, stem: str, after: int | None = None) -> int | None:
    """The highest generation present: the listing's highest (or `after`), then the next names probed
    one by one (a listing may lag; a lookup by name does not). None if the document does not exist."""
    listed = generations(folder, stem)
    gen = max(listed[-1] if listed else -1, -1 if after is None else after)
    while os.path.lexists(path_of(folder, stem, max(gen, 0) + 1)):
        gen = max(gen, 0) + 1
    if gen < 0 and os.path.lexists(path_of(folder, stem, 0)):
        gen = 0
    return gen if gen >= 0 else None


def read_bytes(folder: Path, stem: str) -> tuple[int, bytes, Path] | None:
    """(generation, content, path) of the current version; None if the document does not exist."""
    after = None
    for attempt in range(_RETRIES_VANISHED):
        gen = current(folder, stem, after)
        if gen is None:
            return None
        path = path_of(folder, stem, gen)
        try:
            return gen, read_file(path), path
        except OSError as exc:  # superseded and removed meanwhile: a newer one exists
            if not vanished(exc):
                raise
            after = gen
            if attempt >= 3:  # the listing lags more than versions are kept: wait for it to catch up
                time.sleep(min(0.01 * attempt, 0.5))
    raise OSError(f"{folder}: {stem} keeps changing; gave up after {_RETRIES_VANISHED} reads")


def current_path(folder: Path, stem: str) -> Path:
    """Path of the current version (generation 1's name if there is none yet, for messages)."""
    gen = current(folder, stem)
    return path_of(folder, stem, 1 if gen is None else gen)


def encode(data: Any, pretty: bool = False) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode() if pretty else compact_json(data)


def read_version(folder: Path, stem: str, generation: int) -> bytes | None:
    """The content of one version, opened by name (no listing); None if that name does not exist."""
    try:
        return read_file(path_of(folder, stem, generation))
    except OSError as exc:
        if vanished(exc):
            return None
        raise


def commit_next(folder: Path, stem: str, base: int, data: Any) -> bool:
    """Write `data` as generation base+1 if that name is free: one exclusive create, no listing, no
    check afterwards. Exact only for a writer whose name base+1 can never have been freed by a prune,
    i.e. base+1 is not a version `prune_own` may remove (see the task state's pruning rule in
    store/lifecycle.py); every other writer uses `commit`."""
    return create_new(path_of(folder, stem, base + 1), encode(data))


def remove_version(folder: Path, stem: str, generation: int) -> None:
    """Remove one version its own writer knows to be superseded (see commit_next)."""
    _unlink(path_of(folder, stem, generation))


def create(folder: Path, stem: str, data: Any, pretty: bool = False, fresh: bool = False) -> bool:
    """Create generation 1 unless any version exists; True if this call created the document.

    `fresh`: the caller's own mkdir just made `folder`, so no version can be older than this one and
    none is looked for, before or after (a stager of 1,000,000 tasks: 10 metadata calls fewer per
    task); of racing creators the exclusive create still picks one."""
    if fresh:
        return create_new(path_of(folder, stem, 1), encode(data, pretty))
    if current(folder, stem) is not None:
        return False
    if not create_new(path_of(folder, stem, 1), encode(data, pretty)):
        return False
    if current(folder, stem) != 1 and not _built_on_first(folder, stem):
        _unlink(path_of(folder, stem, 1))  # a stale listing hid a newer version: ours is void
        return False
    return True


def _built_on_first(folder: Path, stem: str) -> bool:
    """Generation 2 was written after our generation 1 (another writer already committed on top of
    it), not long before (an old document whose generation 1 was pruned, hidden by a lagging listing:
    pruned versions were superseded KEEP_SUPERSEDED_S ago)."""
    try:
        first = os.stat(path_of(folder, stem, 1)).st_mtime
        second = os.stat(path_of(folder, stem, 2)).st_mtime
    except FileNotFoundError:
        return False
    return second >= first - 1.0


def commit(folder: Path, stem: str, base: int, data: Any, pretty: bool = False, prune_old: bool = True) -> bool:
    """Write `data` as generation base+1; False if another writer committed a version after `base`.

    `prune_old`: also remove versions superseded KEEP_SUPERSEDED_S ago (see prune). Task states pass
    False: their writers that commit without a listing (commit_next) rely on superseded names never
    being free again, and a task's versions are bounded by its own worker instead."""
    new = base + 1
    text = encode(data, pretty)
    try:
        linked = create_new(path_of(folder, stem, new), text)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not prune_old:
            raise
        # disk full: give up the lag margin rather than the write (see prune), and try once more
        prune(folder, stem, [g for g in generations(folder, stem) if g < base], keep_s=0.0)
        linked = create_new(path_of(folder, stem, new), text)
    if not linked:
        return False
    listed = generations(folder, stem)  # fresh: our own link just changed the folder
    if (listed and listed[-1] > new) or os.path.lexists(path_of(folder, stem, new + 1)):
        _unlink(path_of(folder, stem, new))  # `base` was stale: a superseded name was free again
        return False
    if prune_old:
        prune(folder, stem, [g for g in listed if g < base])
    return True


def prune(folder: Path, stem: str, candidates: list[int], now: float | None = None,
          keep_s: float | None = None) -> None:
    """Remove versions superseded more than KEEP_SUPERSEDED_S ago (never the current one).

    Why wait: a reader whose listing lags finds the current version by probing upward from the
    newest version it lists; that works only if no version after it is gone. A listing lags at
    most KEEP_SUPERSEDED_S (sshfs measured ~20 s), so versions are kept that long."""
    now = time.time() if now is None else now
    keep_s = KEEP_SUPERSEDED_S if keep_s is None else keep_s
    for old in sorted(set(candidates)):
        try:
            superseded_at = os.stat(path_of(folder, stem, old + 1)).st_mtime
        except FileNotFoundError:
            continue
        if now - superseded_at >= keep_s:
            _unlink(path_of(folder, stem, old))


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass



NO_WRITE = object()
"""Returned by a `change` passed to `update`: nothing to write."""
CAS_TRIES = 200


def update(folder: Path, stem: str, lock, parse, change, pretty: bool = False, missing=None,
           prune_old: bool = True, on_commit=None):
    """Read, change and commit the document as one compare-and-set, under `lock()` (a context
    manager that only keeps writers from colliding). Another writer's commit in between (the lock did
    not exclude it) makes this read and change again. `parse(raw, path)` builds the record and
    `record.as_dict()` serialises it; `change(record)` mutates it and returns a value for the caller
    (NO_WRITE: nothing to write). `missing(path)` is raised if the document does not exist.
    `on_commit(generation)` is told the generation this call committed."""
    for attempt in range(CAS_TRIES):
        with lock():
            got = read_bytes(folder, stem)
            if got is None:
                raise missing(path_of(folder, stem, 1))
            gen, text, path = got
            record = parse(text, path)
            outcome = change(record)
            if outcome is NO_WRITE:
                return record, outcome
            if commit(folder, stem, gen, record.as_dict(), pretty, prune_old):
                if on_commit is not None:
                    on_commit(gen + 1)
                return record, outcome
        time.sleep(min(0.001 * (attempt + 1), 0.05))
    raise OSError(f"{folder}: {stem} was changed by others {CAS_TRIES} times while this writer tried to update it")
