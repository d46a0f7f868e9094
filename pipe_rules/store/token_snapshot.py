"""The queue tokens of one task bucket, listed once, so a whole-run reconcile skips the probes of tokens
it knows are absent.

Repairing a task's tokens blindly costs five calls per COMPLETED task (an unlink of every token name
it could have), which made them the largest part of ingestion's metadata calls (27 per task at
10,000 tasks, strace). Listing a folder costs about four calls, so a folder is listed only where
it replaces more probes than that: the ended folders of a bucket when the bucket holds at least
HITS_TO_LIST tasks, a shard's pending folder of a bucket when the bucket holds that many of the
shard's tasks (many shards and few tasks: probing is cheaper, and is what happens).

Why a listing taken earlier is safe to act on: it is taken before the states of its bucket are read,
and only tokens absent from it are skipped. A token made after the listing belongs to a state
committed after it: for a task read as terminal that is its finisher's own move (which puts the
token right itself) or a stale reader's spare pending token (which the next claim of it removes).
A token present in the listing is probed as before. On listings that lag (sshfs), a token may look
absent that exists: the same two outcomes, never a lost or extra live task.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.states import TaskState

_ENDED = tuple(s.value for s in (TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL, TaskState.CANCELLED))


def _names(folder: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


HITS_TO_LIST = 4  # probes a listing must replace to pay for itself (tests set 0: list every folder)
BUCKETS = 256  # task buckets (store/layout.py)


class TokenSnapshot:
    """`listed(path)`: True or False if the token's folder was listed (the token was there or not),
    None if it was not (not worth it, or a shard staged after the listing began): then the caller
    probes. `n_tasks`: the run's staged tasks, for the estimate of what a listing replaces."""

    def __init__(self, layout: RunLayout, n_tasks: int):
        self.layout = layout
        shards = sorted(_names(layout.pending_dir))
        per_bucket = n_tasks / BUCKETS
        self._shards = shards if per_bucket / max(len(shards), 1) >= HITS_TO_LIST else []
        self._ended = _ENDED if per_bucket >= HITS_TO_LIST else ()
        self._inflight = _names(layout.inflight_dir)
        self._bucket: str | None = None
        self._folders: dict[Path, frozenset[str]] = {}

    def enter(self, bucket: str) -> None:
        """List the bucket's folders worth listing (again only when the bucket changes)."""
        if bucket == self._bucket:
            return
        self._bucket = bucket
        folders = [self.layout.pending_dir / shard / bucket for shard in self._shards]
        folders += [self.layout.ended_dir / state / bucket for state in self._ended]
        self._folders = {folder: _names(folder) for folder in folders}

    def listed(self, path: Path) -> bool | None:
        if path.parent == self.layout.inflight_dir:
            return path.name in self._inflight
        names = self._folders.get(path.parent)
        return None if names is None else path.name in names
