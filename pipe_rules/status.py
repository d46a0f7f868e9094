"""Read-only view of a run: task counts per state and the run state (changes nothing on disk)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .errors import StateError
from .layout import RunLayout
from .runrecord import read_run
from .states import TaskState, run_state_from_counts
from .taskstate import read_state


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    run_state: str
    counts: dict[str, int]
    unreadable: tuple[str, ...]

    def as_json(self) -> dict:
        data = {"run_state": self.run_state, "tasks": self.counts, "run_id": self.run_id}
        if self.unreadable:
            data["unreadable"] = list(self.unreadable)
        return data


def run_status(layout: RunLayout) -> RunStatus:
    run = read_run(layout)
    counts: Counter[TaskState] = Counter()
    unreadable = []
    for task_id in layout.iter_task_ids():
        try:
            counts[read_state(layout, task_id).status] += 1
        except StateError as exc:
            unreadable.append(str(exc))
    state = run.state if run.state.value == "CANCELLED" else run_state_from_counts(dict(counts))
    return RunStatus(run.run_id, state.value, {s.value: counts.get(s, 0) for s in TaskState}, tuple(unreadable))
