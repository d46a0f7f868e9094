"""Cancel a run: every unfinished task becomes CANCELLED, the run too; results already written stay."""

from __future__ import annotations

from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import cancel
from pipe_rules.store.runrecord import read_run, update_run
from pipe_rules.store.states import RUN_TRANSITIONS, RunState


def cancel_run(layout: RunLayout, by: str = "user") -> int:
    """The run first, then its tasks: a stager that starts meanwhile sees the run CANCELLED and
    stages nothing, and one already writing cancels its own new tasks (inputs/staging.py).
    A run that ended (COMPLETED, FAILED...) before the cancel arrived keeps its state: a host that
    cancels just as the last task finishes gets 0 back, not an error (see `ended_before_cancel`)."""
    run = read_run(layout)
    update_run(layout, run.lock_mode, lambda rec: rec.move(RunState.CANCELLED, f"cancelled by {by}")
               if RunState.CANCELLED in RUN_TRANSITIONS[rec.state] else None)
    return sum(cancel(layout, task_id, run.lock_mode, by) for task_id in layout.iter_task_ids())


def ended_before_cancel(layout: RunLayout) -> RunState | None:
    """The state of a run that ended on its own (so a cancel left it as it was), else None."""
    state = read_run(layout).state
    return None if state is RunState.CANCELLED or RunState.CANCELLED in RUN_TRANSITIONS[state] else state
