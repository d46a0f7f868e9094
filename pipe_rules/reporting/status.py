"""A view of a run: task counts per state, the run state, and (on request) counts and CPU-hours per owner.

The fast path never lists the pending tokens (1,000,000 of them at the start of a big run) and
never reads a state file: COMPLETED comes from the workers' cost ledgers (costs/*.tsv, one line per
attempt with its outcome; a worker appends it just before the terminal state), RUNNING from the
in-flight tokens, the failures from their markers, and PENDING is the rest of the staged tasks,
per owner too (its tasks minus the others). Task ids are mapped to owners through the run's owner
index (owner_index.npz, hashed ids: see store/owner_index.py), so 1,000,000 ledger lines count in
well under a second. Runs whose ledgers have no outcome column (schema 1), or whose counts do not
add up, fall back to counting tokens (pending ones included); `exact=True` reads every state file
instead (e.g. after a crash before `reconcile`).

A task can end COMPLETED without its ledger line (a worker killed between result.json and that
line, whose result `reconcile` salvages; a ledger write that failed on a full disk): the ledgers
would count it PENDING forever. So once the ledgers say at most LIST_PENDING_BELOW tasks are
pending, the pending tokens are listed as before (50,000 names: ~0.1 s) and the token counts are the
answer: the count is exact near the end of a run, where the run state depends on it, and off by at
most the salvaged tasks while more are pending.

CPU-hours come from the same ledgers. What status needs of them (a COMPLETED flag per task, five
sums per owner: store/ledger_summary.py) is cached in costs/ledger-summary-v2.npz and extended by
the lines appended since, so neither time nor memory grows with the lines already read. That cache
and the owner index are the only files this view may write; nothing else on disk is changed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipe_rules.contracts.errors import StateError
from pipe_rules.reporting.cost_sums import CostSummary
from pipe_rules.reporting.owner_counts import OWNER_COLUMNS, _COLUMN_OF, OwnerCounts, OwnerTable
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.ledger import LineCounts
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import RunState, TaskState, run_state_from_counts, shown_status

if TYPE_CHECKING:
    import numpy as np

__all__ = ["OWNER_COLUMNS", "OwnerCounts", "OwnerTable", "RunStatus", "StatusReader", "run_status"]


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    run_state: str
    counts: dict[str, int]
    unreadable: tuple[str, ...]
    exact: bool
    owners: Mapping[str, OwnerCounts] | None = None  # only when asked for (an OwnerTable)
    cost: CostSummary | None = None  # only when owners were asked for

    @property
    def terminal(self) -> bool:
        return self.run_state in {"COMPLETED", "COMPLETED_PARTIAL", "FAILED", "CANCELLED"}

    def as_json(self) -> dict:
        data = {"run_state": self.run_state, "tasks": self.counts, "run_id": self.run_id, "exact": self.exact}
        if self.unreadable:
            data["unreadable"] = list(self.unreadable)
        if self.owners is not None:
            table = self.owners
            data["owners"] = table.as_json() if isinstance(table, OwnerTable) else \
                {owner: counts.as_json() for owner, counts in table.items()}
        if self.cost is not None:
            data["cost"] = self.cost.as_dict()
        return data


def _file_names(folder: Path, depth: int) -> list[str]:
    """Names of the files `depth` folders below `folder` (0: directly in it)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    if depth == 0:
        return [e.name for e in entries if e.is_file()]
    names: list[str] = []
    for entry in entries:
        if entry.is_dir():
            names += _file_names(Path(entry.path), depth - 1)
    return names


def _token_names(layout: RunLayout) -> dict[TaskState, list[str]]:
    names = {TaskState.PENDING: _file_names(layout.pending_dir, 2),
             TaskState.RUNNING: _file_names(layout.inflight_dir, 0)}
    for state in (TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL, TaskState.CANCELLED):
        names[state] = _file_names(layout.ended_dir / state.value, 1)
    return names


def _token_counts(names: dict[TaskState, list[str]], total: int) -> Counter | None:
    counts: Counter[TaskState] = Counter({state: len(ids) for state, ids in names.items()})
    completed = total - sum(counts.values())
    if completed < 0:
        return None
    counts[TaskState.COMPLETED] = completed
    return counts


def _state_counts(layout: RunLayout) -> tuple[Counter, list[str], dict[str, TaskState]]:
    from pipe_rules.store.taskstate import read_state  # here: its pydantic model costs the fast path ~0.1 s

    counts: Counter[TaskState] = Counter()
    unreadable = []
    states: dict[str, TaskState] = {}
    in_flight = set(_file_names(layout.inflight_dir, 0))  # PENDING behind one of these: claimed, not yet written
    for task_id in layout.iter_task_ids():
        try:
            states[task_id] = shown_status(read_state(layout, task_id).status, task_id in in_flight)
        except StateError as exc:
            unreadable.append(str(exc))
            continue
        counts[states[task_id]] += 1
    return counts, unreadable, states


LIST_PENDING_BELOW = 50_000
_CODES = (TaskState.PENDING, TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED_ESS,
          TaskState.FAILED_TERMINAL, TaskState.CANCELLED)  # per-task codes of the ledger path


class StatusReader:
    """Reads a run's status; keeps the cost ledgers' read positions, so a `--watch` loop or the
    progress display re-reads only what the workers appended since."""

    def __init__(self, layout: RunLayout):
        self.layout = layout
        self._summary = None
        self._index = None

    def _owner_index(self):
        """The owner index, loaded once while the manifest does not change (store/owner_index.py)."""
        from pipe_rules.store.owner_index import load_owner_index

        self._index = load_owner_index(self.layout, self._index)
        return self._index

    def _ledgers(self, index):
        """The ledgers' summary (store/ledger_summary.py), brought up to date."""
        from pipe_rules.store.ledger_summary import LedgerSummary

        if self._summary is None:
            self._summary = LedgerSummary(self.layout.root)
        return self._summary.refresh(index)

    def read(self, exact: bool = False, owners: bool = False) -> RunStatus:
        run = read_run(self.layout)
        unreadable: list[str] = []
        counts = codes = index = None
        if not exact:
            found = self._ledger_codes(run.n_tasks)
            if found is not None:
                codes, index = found
                import numpy as np

                tally = np.bincount(codes, minlength=len(_CODES))
                counts = Counter({state: int(tally[i]) for i, state in enumerate(_CODES)})
            else:
                names = _token_names(self.layout)
                counts = _token_counts(names, run.n_tasks)
                known = names
        if counts is None:
            exact = True
            counts, unreadable, states = _state_counts(self.layout)
            known = {}
            for task_id, task_state in states.items():
                known.setdefault(task_state, []).append(task_id)
        state = run.state if run.state is RunState.CANCELLED else run_state_from_counts(dict(counts))
        status = RunStatus(run.run_id, state.value, {s.value: counts.get(s, 0) for s in TaskState},
                           tuple(unreadable), exact)
        if not owners:
            return status
        table = self._owners_from_codes(index, codes) if codes is not None else \
            self._owners(known, rest_done=not exact)
        return RunStatus(status.run_id, status.run_state, status.counts, status.unreadable, status.exact,
                         table, table.run_cost)

    def _ledger_codes(self, n_tasks: int):
        """(a state code per staged task, in the owner index's order; the index), or None when the
        tokens should be counted: an outcome-less ledger, ids the index does not know, or at most
        LIST_PENDING_BELOW tasks without a COMPLETED line (see the module's docstring)."""
        import numpy as np

        index = self._owner_index()
        if len(index.task_ids) != n_tasks:
            return None  # staging under way, or a manifest that does not match the run record
        summary = self._ledgers(index)
        if summary.unknown_outcomes or summary.unknown_done:
            return None
        codes = summary.done.astype(np.int8) * np.int8(_CODES.index(TaskState.COMPLETED))
        if n_tasks - int(np.count_nonzero(codes)) <= LIST_PENDING_BELOW:
            return None  # few pending: their tokens are cheap to list and exact
        names = {TaskState.RUNNING: _file_names(self.layout.inflight_dir, 0)}  # a token wins over a ledger line
        for state in (TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL, TaskState.CANCELLED):
            names[state] = _file_names(self.layout.ended_dir / state.value, 1)
        for state, ids in names.items():
            at = index.positions_of(ids)
            if (at < 0).any():
                return None
            codes[at] = _CODES.index(state)
        return codes, index

    def _owners_from_codes(self, index, codes) -> OwnerTable:
        """Per-owner columns from the per-task codes: one bincount per code."""
        import numpy as np

        n = len(index.owners)
        columns = {column: np.zeros(n, dtype=np.int64) for column in OWNER_COLUMNS}
        for code, task_state in enumerate(_CODES):
            columns[_COLUMN_OF[task_state]] += np.bincount(index.owner_of[codes == code], minlength=n)
        if len(index.alias_owner):
            at = index.positions_of(index.alias_base)
            known = at >= 0
            for code, task_state in enumerate(_CODES):
                mine = index.alias_owner[known][codes[at[known]] == code]
                columns[_COLUMN_OF[task_state]] += np.bincount(mine, minlength=n)
        return OwnerTable(index.owners, columns, *self._costs(index))

    def _owners(self, known: dict[TaskState, list[str]], rest_done: bool) -> OwnerTable:
        """Per-owner columns from the task ids known per state (tokens, or state files when exact);
        with `rest_done`, staged tasks without a token are COMPLETED. An alias counts for its owner
        with its base's state. Vectorised: 100,000 tasks take a few tens of milliseconds."""
        import numpy as np  # only here: the plain status must not pay for importing it

        index = self._owner_index()
        n = len(index.owners)

        def counted(owner_ids: np.ndarray) -> np.ndarray:
            return np.bincount(owner_ids[owner_ids >= 0], minlength=n)

        columns = {column: np.zeros(n, dtype=np.int64) for column in OWNER_COLUMNS}
        for task_state, task_ids in known.items():
            columns[_COLUMN_OF[task_state]] += counted(index.owners_of(task_ids))
        if rest_done:
            others = sum(columns[c] for c in OWNER_COLUMNS if c != "done")
            columns["done"] = np.maximum(counted(index.owner_of) - others, 0)
        if len(index.alias_owner):
            state_of = {t: st for st, ids in known.items() for t in ids}
            for owner, base in zip(index.alias_owner.tolist(), (b.decode() for b in index.alias_base.tolist())):
                task_state = state_of.get(base, TaskState.COMPLETED if rest_done else None)
                if task_state is not None:
                    columns[_COLUMN_OF[task_state]][owner] += 1
        return OwnerTable(index.owners, columns, *self._costs(index))

    def _costs(self, index) -> tuple[np.ndarray, CostSummary]:
        """CPU-hours per owner (rows: attempts, cpu_hours, cpu_hours_used, task_wall_s, peak_rss_mb) and the run's."""
        summary = self._ledgers(index)
        attempts, cpu_hours, used, wall_s, peak = summary.totals.tolist()
        run_cost = CostSummary(int(attempts), cpu_hours, used, wall_s, peak if attempts else None)
        return summary.cost, run_cost


class ProgressCounter:
    """Counts for the progress display without listing the pending tokens (1,000,000 of them at the
    start of a big run): COMPLETED from the workers' cost ledgers (only the lines appended since the
    last poll are read), RUNNING from the in-flight folder, the failures from their markers, and
    PENDING the rest. A worker writes its ledger line just before the terminal state, so the count
    may run one task per worker ahead for a moment. Ledgers of schema 1 (no outcome column), or
    counts that do not add up, fall back to counting tokens."""

    def __init__(self, layout: RunLayout):
        self.layout = layout
        self._tally = LineCounts(layout.root)

    def counts(self, n_tasks: int) -> dict[str, int] | None:
        tally = self._tally.refresh()
        names = {TaskState.RUNNING: _file_names(self.layout.inflight_dir, 0)}
        for state in (TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL, TaskState.CANCELLED):
            names[state] = _file_names(self.layout.ended_dir / state.value, 1)
        pending = n_tasks - tally.completed - sum(len(v) for v in names.values())
        if tally.unknown_outcomes or pending < 0:
            return token_counts(self.layout, n_tasks)
        counts = {s.value: 0 for s in TaskState}
        counts.update({state.value: len(ids) for state, ids in names.items()})
        counts[TaskState.COMPLETED.value] = tally.completed
        counts[TaskState.PENDING.value] = pending
        return counts


def token_counts(layout: RunLayout, n_tasks: int) -> dict[str, int] | None:
    """Counts per state from queue tokens alone, or None while they do not add up (during staging,
    after a crash): the progress display asks this every second and must never read state files."""
    counts = _token_counts(_token_names(layout), n_tasks)
    return None if counts is None else {s.value: counts.get(s, 0) for s in TaskState}


def run_status(layout: RunLayout, exact: bool = False, owners: bool = False) -> RunStatus:
    """The run's status; with `owners`, also counts and CPU-hours per owner (reads the owner index
    and the cost ledgers: 0.15-0.2 s more at 100,000 tasks once the index is cached)."""
    return StatusReader(layout).read(exact, owners)
