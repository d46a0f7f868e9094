"""Cancel a run: every unfinished task becomes CANCELLED, the run too; results already written stay."""

from __future__ import annotations

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import cancel
from pipe_rules.store.runrecord import read_run, update_run
from pipe_rules.store.states import RunState


def cancel_run(layout: RunLayout, by: str = "user") -> int:
    """The run first, then its tasks: a stager that starts meanwhile sees the run CANCELLED and
    stages nothing, and one already writing cancels its own new tasks (inputs/staging.py)."""
    run = read_run(layout)
    update_run(layout, run.lock_mode, lambda rec: rec.move(RunState.CANCELLED, f"cancelled by {by}")
               if rec.state is not RunState.CANCELLED else None)
    return sum(cancel(layout, task_id, run.lock_mode, by) for task_id in layout.iter_task_ids())
