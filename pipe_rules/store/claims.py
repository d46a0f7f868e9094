"""O(1) claims: take a task by moving its queue token to the in-flight folder, then confirm with a locked CAS.

Each shard has a folder of empty token files, one per PENDING task. A worker lists its own
shard's folder once and then tries tokens in order: `rename` of a token into queue/inflight/
succeeds for exactly one process (the others find it gone), so the listing is amortised over the
tasks it yields and no claim ever reads other tasks' state files; one rename also replaces an
unlink plus the create of the in-flight marker, and creating files is what costs on shared
filesystems. When its shard is empty the worker steals from the others, starting from the far
end of their listing to stay out of the owner's way. The state CAS after the rename is the real
guard: two workers can never both own a task, even if an NFS retry makes a rename look lost.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Iterator

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import move_if_present as _take, remove_if_present
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import Claim, claim_and_start
from pipe_rules.store.locks import LockTimeout

RECHECK_S = 2.0


class TaskPicker:
    def __init__(self, layout: RunLayout, own_shard: str | None, lock_mode: str, worker_id: str, lease_s: float):
        self.layout = layout
        self.own_shard = own_shard
        self.lock_mode = lock_mode
        self.worker_id = worker_id
        self.lease_s = lease_s
        self._cache: dict[str, deque[str]] = {}
        self._buckets: dict[str, deque[str]] = {}
        self._empty_at: dict[str, float] = {}
        self._listed: set[str] = set()  # shards whose folder this picker listed
        self._shards: list[str] | None = None  # listed once, and again only when every queue looked empty

    def _shard_order(self) -> list[str]:
        try:
            shards = sorted(os.listdir(self.layout.pending_dir))
        except FileNotFoundError:
            return []
        if self.own_shard in shards:
            at = shards.index(self.own_shard)
            shards = shards[at:] + shards[:at]
        return shards

    def _candidates(self, shard: str, relist: bool) -> Iterator[str]:
        """Yield token names bucket by bucket (tokens sit in up to 256 bucket folders per shard, so no
        folder grows huge). The shard folder is listed the first time and then only when `relist`
        (every queue looked empty: one more pass before giving up); each bucket is listed once when
        reached and then dropped. So a drain lists each folder about twice in all instead of
        re-scanning buckets for every claim; a token re-queued into a bucket already passed is found
        by the pass before giving up."""
        tokens = self._cache.setdefault(shard, deque())
        buckets = self._buckets.setdefault(shard, deque())
        root = self.layout.pending_shard_dir(shard)
        if relist or shard not in self._listed:
            self._listed.add(shard)
            try:
                buckets.clear()
                buckets.extend(sorted(os.listdir(root), reverse=shard != self.own_shard))
            except FileNotFoundError:
                return
        while True:
            while tokens:
                yield tokens.popleft()
            if not buckets:
                return
            try:
                tokens.extend(sorted(os.listdir(root / buckets.popleft()), reverse=shard != self.own_shard))
            except FileNotFoundError:
                pass

    def next_claim(self) -> Claim | None:
        """Claim the next PENDING task, own shard first; None when every queue is empty.

        A shard found empty is skipped for RECHECK_S seconds (re-queued retries land in it rarely);
        before giving up, the shards are listed afresh (a new stage may have added one) and each is
        tried once more."""
        now = time.monotonic()
        if self._shards is None:
            self._shards = self._shard_order()
        fresh = [s for s in self._shards if now - self._empty_at.get(s, -RECHECK_S) >= RECHECK_S]
        claim = self._claim_from(fresh, relist=False)
        if claim is None:
            self._empty_at.clear()
            self._shards = self._shard_order()
            claim = self._claim_from(self._shards, relist=True)
        return claim

    def _claim_from(self, shards: list[str], relist: bool) -> Claim | None:
        for shard in shards:
            busy = False
            for task_id in self._candidates(shard, relist):
                token = self.layout.pending_token(shard, task_id)
                if not _take(token, self.layout.inflight_token(task_id)):
                    continue  # another worker took it
                try:
                    claim = claim_and_start(self.layout, task_id, self.lock_mode, self.worker_id, self.lease_s,
                                            inflight_placed=True)
                except LockTimeout:  # busy, not corrupt: still PENDING, hand the token back, try elsewhere
                    _take(self.layout.inflight_token(task_id), token)
                    self._cache.pop(shard, None)
                    self._buckets.pop(shard, None)
                    self._listed.discard(shard)  # list it afresh next time
                    busy = True
                    break
                except OSError:
                    _take(self.layout.inflight_token(task_id), token)  # still PENDING: back for another worker
                    raise
                except StateError:  # unreadable state: leave the token out until `reconcile` repairs it
                    remove_if_present(self.layout.inflight_token(task_id))
                    raise
                if claim is not None:
                    return claim
            if not busy:
                self._empty_at[shard] = time.monotonic()
        return None


    def claim_stranded(self, task_id: str) -> Claim | None:
        """Claim a PENDING task whose token has sat in queue/inflight/ for a lease (worker.py's _Watch):
        its claimer died or stalled before writing its claim down (or a requeuer died between its
        commit and the token move). The attempt that claimer began is settled first (salvaged or
        orphaned); if it is alive after all, its next write finds its name taken and it gives up."""
        try:
            return claim_and_start(self.layout, task_id, self.lock_mode, self.worker_id, self.lease_s,
                                   inflight_placed=True, settle=True)
        except LockTimeout:
            return None
