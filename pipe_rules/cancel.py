"""Cancel a run: every unfinished task becomes CANCELLED, the run too; results already written stay."""

from __future__ import annotations

from .layout import RunLayout
from .lifecycle import cancel
from .runrecord import read_run, update_run
from .states import RunState


def cancel_run(layout: RunLayout, by: str = "user") -> int:
    run = read_run(layout)
    cancelled = sum(cancel(layout, task_id, run.lock_mode, by) for task_id in layout.iter_task_ids())
    update_run(layout, run.lock_mode, lambda rec: rec.move(RunState.CANCELLED, f"cancelled by {by}")
               if rec.state is not RunState.CANCELLED else None)
    return cancelled
