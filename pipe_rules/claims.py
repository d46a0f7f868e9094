"""O(1) claims: take a task by deleting its queue token, then confirm with a locked CAS.

Each shard has a folder of empty token files, one per PENDING task. A worker lists its own
shard's folder once and then tries tokens in order: `unlink` succeeds for exactly one process,
so the listing is amortised over the tasks it yields and no claim ever reads other tasks' state
files. When its shard is empty the worker steals from the others, starting from the far end of
their listing to stay out of the owner's way. The state CAS after the unlink is the real guard:
two workers can never both own a task, even if an NFS retry makes an unlink look lost.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Iterator

from .fsio import remove_if_present
from .layout import RunLayout
from .lifecycle import Claim, claim_and_start


class TaskPicker:
    def __init__(self, layout: RunLayout, own_shard: str | None, lock_mode: str, worker_id: str, lease_s: float):
        self.layout = layout
        self.own_shard = own_shard
        self.lock_mode = lock_mode
        self.worker_id = worker_id
        self.lease_s = lease_s
        self._cache: dict[str, deque[str]] = {}

    def _shard_order(self) -> list[str]:
        try:
            shards = sorted(os.listdir(self.layout.pending_dir))
        except FileNotFoundError:
            return []
        if self.own_shard in shards:
            at = shards.index(self.own_shard)
            shards = shards[at:] + shards[:at]
        return shards

    def _candidates(self, shard: str) -> Iterator[str]:
        """Yield token names bucket by bucket, listing a folder again only when its cached listing is
        used up (tokens sit in 256 bucket folders per shard, so no folder grows huge)."""
        cached = self._cache.setdefault(shard, deque())
        while True:
            while cached:
                yield cached.popleft()
            root = self.layout.pending_shard_dir(shard)
            try:
                buckets = sorted(os.listdir(root), reverse=shard != self.own_shard)
            except FileNotFoundError:
                return
            for bucket in buckets:
                try:
                    names = sorted(os.listdir(root / bucket), reverse=shard != self.own_shard)
                except FileNotFoundError:
                    continue
                if names:
                    cached.extend(names)
                    break
            if not cached:
                return

    def next_claim(self) -> Claim | None:
        """Claim the next PENDING task, own shard first; None when every queue is empty."""
        for shard in self._shard_order():
            for task_id in self._candidates(shard):
                if not remove_if_present(self.layout.pending_token(shard, task_id)):
                    continue  # another worker took it
                claim = claim_and_start(self.layout, task_id, self.lock_mode, self.worker_id, self.lease_s)
                if claim is not None:
                    return claim
        return None
