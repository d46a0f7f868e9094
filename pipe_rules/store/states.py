"""Task and run states, and the only transitions allowed between them.

Every write of a task's state.json goes through `check_task_transition`, inside the task's lock,
so the state machine doubles as the compare-and-set that makes claims exclusive.
"""

from __future__ import annotations

from enum import Enum

from pipe_rules.contracts.errors import InvalidTransition


class TaskState(str, Enum):
    PENDING = "PENDING"
    CLAIMED = "CLAIMED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED_RETRYABLE = "FAILED_RETRYABLE"
    FAILED_ESS = "FAILED_ESS"
    FAILED_TERMINAL = "FAILED_TERMINAL"
    ORPHANED = "ORPHANED"
    CANCELLED = "CANCELLED"


class RunState(str, Enum):
    CREATED = "CREATED"
    STAGED = "STAGED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPLETED_PARTIAL = "COMPLETED_PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


T = TaskState
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    T.PENDING: frozenset({T.CLAIMED, T.CANCELLED}),
    T.CLAIMED: frozenset({T.RUNNING, T.PENDING, T.ORPHANED, T.CANCELLED}),
    T.RUNNING: frozenset(
        {T.COMPLETED, T.FAILED_RETRYABLE, T.FAILED_ESS, T.FAILED_TERMINAL, T.ORPHANED, T.CANCELLED}
    ),
    T.FAILED_RETRYABLE: frozenset({T.PENDING, T.FAILED_TERMINAL}),
    T.ORPHANED: frozenset({T.PENDING, T.FAILED_TERMINAL}),
    T.COMPLETED: frozenset(),
    T.FAILED_ESS: frozenset(),
    T.FAILED_TERMINAL: frozenset(),
    T.CANCELLED: frozenset(),
}
"""CLAIMED -> PENDING is a worker handing back a task it claimed but never started (e.g. SIGTERM
between claim and start); unlike ARC it does not use up an attempt."""

TERMINAL_TASK_STATES = frozenset(s for s, nxt in TASK_TRANSITIONS.items() if not nxt)
IN_FLIGHT_TASK_STATES = frozenset({T.CLAIMED, T.RUNNING})

R = RunState
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    R.CREATED: frozenset({R.STAGED, R.FAILED, R.CANCELLED}),
    R.STAGED: frozenset({R.RUNNING, R.COMPLETED, R.COMPLETED_PARTIAL, R.FAILED, R.CANCELLED}),
    R.RUNNING: frozenset({R.STAGED, R.COMPLETED, R.COMPLETED_PARTIAL, R.FAILED, R.CANCELLED}),
    # A terminal run re-opens only when new tasks are staged into it or failed ones are retried.
    R.COMPLETED: frozenset({R.STAGED}),
    R.COMPLETED_PARTIAL: frozenset({R.STAGED, R.RUNNING}),
    R.FAILED: frozenset({R.STAGED, R.RUNNING}),
    R.CANCELLED: frozenset(),
}
TERMINAL_RUN_STATES = frozenset({R.COMPLETED, R.COMPLETED_PARTIAL, R.FAILED, R.CANCELLED})


def shown_status(status: TaskState, in_flight_token: bool) -> TaskState:
    """The state a count reports: a PENDING task behind an in-flight token is running under a claim
    its worker has not written down yet (store/lifecycle.py)."""
    return TaskState.RUNNING if status is TaskState.PENDING and in_flight_token else status


def check_task_transition(current: TaskState, new: TaskState) -> None:
    """Raise InvalidTransition unless current -> new is allowed (no self-transitions)."""
    if not isinstance(current, TaskState) or not isinstance(new, TaskState):
        raise TypeError("task transitions take TaskState values")
    if new not in TASK_TRANSITIONS[current]:
        raise InvalidTransition(f"task transition {current.value} -> {new.value} is not allowed")


def check_run_transition(current: RunState, new: RunState) -> None:
    """Raise InvalidTransition unless current -> new is allowed (no self-transitions)."""
    if not isinstance(current, RunState) or not isinstance(new, RunState):
        raise TypeError("run transitions take RunState values")
    if new not in RUN_TRANSITIONS[current]:
        raise InvalidTransition(f"run transition {current.value} -> {new.value} is not allowed")


def run_state_from_counts(counts: dict[TaskState, int]) -> RunState:
    """Derive a run's state from how many tasks sit in each task state."""
    total = sum(counts.values())
    if total == 0:  # nothing to do is done: an empty run must not stay active forever (ARC item 11)
        return RunState.COMPLETED
    active = sum(counts.get(s, 0) for s in (T.PENDING, T.CLAIMED, T.RUNNING, T.FAILED_RETRYABLE, T.ORPHANED))
    if active:
        started = total - counts.get(T.PENDING, 0)
        return RunState.RUNNING if started else RunState.STAGED
    done = counts.get(T.COMPLETED, 0)
    if counts.get(T.CANCELLED, 0) == total:
        return RunState.CANCELLED
    if done == total:
        return RunState.COMPLETED
    if done == 0:
        return RunState.FAILED
    return RunState.COMPLETED_PARTIAL
