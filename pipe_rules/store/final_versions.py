"""The state version each ended task ended at, noted by a reconcile so ingestion opens it by name.

Ingestion reads every task's state right after a reconcile read it. Finding the current version
costs a listing of the task's folder and a probe of the next name (5 metadata calls, a round trip
each on Lustre or NFS); opening a known name costs one. A terminal version stays the current one
for good: no transition leaves a terminal state, and no writer removes a current version (a task's
versions are only ever removed by their own worker, and only superseded heartbeats; see
store/lifecycle.py). So the generation a reconcile read for an ended task is still right when
ingestion comes to it, however long after.

One integer per staged task, at the task's position in the owner index (4 MB at 1,000,000 tasks);
0 is unknown (not ended, or changed by that reconcile): ingestion then reads as it always did.
"""

from __future__ import annotations

import numpy as np

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.owner_index import OwnerIndex, load_owner_index

_BATCH = 4096  # ids looked up in the index at a time (one vectorised search per batch)


class FinalVersions:
    def __init__(self, layout: RunLayout):
        self.layout = layout
        self.index: OwnerIndex | None = None
        self._generations: np.ndarray | None = None
        self._pending: list[tuple[str, int]] = []
        self._off = False  # the index could not be loaded: ingestion will say why itself

    def note(self, task_id: str, generation: int) -> None:
        """`generation` is the version a reconcile read for this task, which is terminal."""
        if self._off:
            return
        self._pending.append((task_id, generation))
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending or self._off:
            return
        if self.index is None:
            try:
                self.index = load_owner_index(self.layout)
            except (PipeRulesError, OSError, ValueError):
                self._off, self._pending = True, []
                return
            self._generations = np.zeros(len(self.index.task_ids), dtype=np.uint32)
        ids, generations = zip(*self._pending)
        self._pending = []
        at = self.index.positions_of(list(ids))
        known = at >= 0
        self._generations[at[known]] = np.asarray(generations, dtype=np.uint32)[known]

    def noted(self) -> tuple[OwnerIndex | None, np.ndarray | None]:
        """(the owner index, the generation at each of its positions); (None, None) if nothing was
        noted. A caller that loads the index again passes this one as `previous`: if the manifest
        changed in between it gets another index, whose positions these generations do not match."""
        self._flush()
        return self.index, self._generations
