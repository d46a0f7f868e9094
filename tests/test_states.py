"""The task and run state machines: every allowed transition passes, every other one is refused."""

import itertools

import pytest

from pipe_rules.contracts.errors import InvalidTransition
from pipe_rules.store.states import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunState,
    TaskState,
    check_run_transition,
    check_task_transition,
    run_state_from_counts,
)

T = TaskState
EXPECTED_TASK = {
    (T.PENDING, T.CLAIMED), (T.PENDING, T.CANCELLED),
    (T.CLAIMED, T.RUNNING), (T.CLAIMED, T.PENDING), (T.CLAIMED, T.ORPHANED), (T.CLAIMED, T.CANCELLED),
    (T.RUNNING, T.COMPLETED), (T.RUNNING, T.FAILED_RETRYABLE), (T.RUNNING, T.FAILED_ESS),
    (T.RUNNING, T.FAILED_TERMINAL), (T.RUNNING, T.ORPHANED), (T.RUNNING, T.CANCELLED),
    (T.FAILED_RETRYABLE, T.PENDING), (T.FAILED_RETRYABLE, T.FAILED_TERMINAL),
    (T.ORPHANED, T.PENDING), (T.ORPHANED, T.FAILED_TERMINAL),
}


@pytest.mark.parametrize("current,new", list(itertools.product(TaskState, TaskState)))
def test_every_task_transition(current, new):
    if (current, new) in EXPECTED_TASK:
        check_task_transition(current, new)
    else:
        with pytest.raises(InvalidTransition, match=f"{current.value} -> {new.value} is not allowed"):
            check_task_transition(current, new)


def test_terminal_task_states_have_no_way_out():
    for state in (T.COMPLETED, T.FAILED_ESS, T.FAILED_TERMINAL, T.CANCELLED):
        assert TASK_TRANSITIONS[state] == frozenset()


R = RunState
EXPECTED_RUN = {  # written out, not derived from RUN_TRANSITIONS: the test must be able to disagree
    (R.CREATED, R.STAGED), (R.CREATED, R.FAILED), (R.CREATED, R.CANCELLED),
    (R.STAGED, R.RUNNING), (R.STAGED, R.COMPLETED), (R.STAGED, R.COMPLETED_PARTIAL), (R.STAGED, R.FAILED),
    (R.STAGED, R.CANCELLED),
    (R.RUNNING, R.STAGED), (R.RUNNING, R.COMPLETED), (R.RUNNING, R.COMPLETED_PARTIAL), (R.RUNNING, R.FAILED),
    (R.RUNNING, R.CANCELLED),
    (R.COMPLETED, R.STAGED),  # new tasks staged into a finished run
    (R.COMPLETED_PARTIAL, R.STAGED), (R.COMPLETED_PARTIAL, R.RUNNING),  # ... or failed ones retried
    (R.FAILED, R.STAGED), (R.FAILED, R.RUNNING),
}


@pytest.mark.parametrize("current,new", list(itertools.product(RunState, RunState)))
def test_every_run_transition(current, new):
    if (current, new) in EXPECTED_RUN:
        check_run_transition(current, new)
    else:
        with pytest.raises(InvalidTransition, match=f"run transition {current.value} -> {new.value} is not allowed"):
            check_run_transition(current, new)


def test_a_cancelled_run_stays_cancelled():
    assert RUN_TRANSITIONS[R.CANCELLED] == frozenset()


def test_mixing_task_and_run_states_is_a_type_error():
    with pytest.raises(TypeError):
        check_task_transition(T.PENDING, RunState.RUNNING)


@pytest.mark.parametrize("counts,expected", [
    ({}, RunState.COMPLETED),
    ({T.PENDING: 3}, RunState.STAGED),
    ({T.PENDING: 2, T.COMPLETED: 1}, RunState.RUNNING),
    ({T.RUNNING: 1}, RunState.RUNNING),
    ({T.COMPLETED: 4}, RunState.COMPLETED),
    ({T.COMPLETED: 3, T.FAILED_ESS: 1}, RunState.COMPLETED_PARTIAL),
    ({T.FAILED_TERMINAL: 2}, RunState.FAILED),
    ({T.CANCELLED: 2}, RunState.CANCELLED),
])
def test_run_state_follows_task_counts(counts, expected):
    assert run_state_from_counts(counts) is expected
