"""Read-only view of a run: task counts per state and the run state (changes nothing on disk).

The fast path counts queue tokens instead of reading state files: pending tokens, in-flight
tokens and markers of tasks that ended without COMPLETED; the rest of the staged tasks are
COMPLETED. That is a few hundred directory listings at 100,000 tasks. `exact=True` reads every
state file instead (and is used when the tokens do not add up, e.g. after a crash before
`reconcile`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import StateError
from .layout import RunLayout
from .runrecord import read_run
from .states import RunState, TaskState, run_state_from_counts
from .taskstate import read_state


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    run_state: str
    counts: dict[str, int]
    unreadable: tuple[str, ...]
    exact: bool

    def as_json(self) -> dict:
        data = {"run_state": self.run_state, "tasks": self.counts, "run_id": self.run_id, "exact": self.exact}
        if self.unreadable:
            data["unreadable"] = list(self.unreadable)
        return data


def _count_files(folder: Path, depth: int) -> int:
    """Files `depth` folders below `folder` (0: directly in it)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    if depth == 0:
        return sum(1 for e in entries if e.is_file())
    return sum(_count_files(Path(e.path), depth - 1) for e in entries if e.is_dir())


def _token_counts(layout: RunLayout, total: int) -> Counter | None:
    counts: Counter[TaskState] = Counter()
    counts[TaskState.PENDING] = _count_files(layout.pending_dir, 2)
    counts[TaskState.RUNNING] = _count_files(layout.inflight_dir, 0)
    for state in (TaskState.FAILED_ESS, TaskState.FAILED_TERMINAL, TaskState.CANCELLED):
        counts[state] = _count_files(layout.ended_dir / state.value, 1)
    completed = total - sum(counts.values())
    if completed < 0:
        return None
    counts[TaskState.COMPLETED] = completed
    return counts


def _state_counts(layout: RunLayout) -> tuple[Counter, list[str]]:
    counts: Counter[TaskState] = Counter()
    unreadable = []
    for task_id in layout.iter_task_ids():
        try:
            counts[read_state(layout, task_id).status] += 1
        except StateError as exc:
            unreadable.append(str(exc))
    return counts, unreadable


def run_status(layout: RunLayout, exact: bool = False) -> RunStatus:
    run = read_run(layout)
    counts = None if exact else _token_counts(layout, run.n_tasks)
    unreadable: list[str] = []
    if counts is None:
        exact = True
        counts, unreadable = _state_counts(layout)
    state = run.state if run.state is RunState.CANCELLED else run_state_from_counts(dict(counts))
    return RunStatus(run.run_id, state.value, {s.value: counts.get(s, 0) for s in TaskState},
                     tuple(unreadable), exact)
