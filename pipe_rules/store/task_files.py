"""The two per-task files other programs read: spec.json (written once at staging) and each
attempt's result.json, both checked against their models whenever they are read or written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import SpecError, StateError
from pipe_rules.contracts.models import problem
from pipe_rules.contracts.result import ResultRecord
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.store.fsio import atomic_write_json, read_json


def load_spec(path: Path) -> TaskSpec:
    """Read, parse and validate a spec.json; a spec that fails here is never executed."""
    try:
        data = read_json(path, "task spec", own=True)
    except StateError as exc:
        raise SpecError(exc.message, path=path) from None
    return TaskSpec.from_dict(data, path)


def write_result(path: Path, record: ResultRecord) -> None:
    data = record.as_dict()
    found = problem(ResultRecord, data)
    if found:  # a bug in the worker, never the user's input: fail loudly
        raise StateError(f"result does not match its schema: {found[1]}", path=path, field=found[0])
    try:  # the attempt folder exists (the worker ran the engine in it): no mkdir probe per task
        atomic_write_json(path, data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data)


def read_result(path: Path, missing_ok: bool = False) -> dict[str, Any] | None:
    """The validated result; `missing_ok`: None if there is none (one open, no stat before it)."""
    try:
        data = read_json(path, "task result", own=True)
    except StateError:
        if missing_ok and not os.path.lexists(path):
            return None
        raise
    found = problem(ResultRecord, data)
    if found:
        raise StateError(found[1], path=path, field=found[0])
    return data


def has_completed_result(path: Path) -> bool:
    """The attempt left a readable result.json that says COMPLETED (what salvage trusts)."""
    try:
        return read_json(path, "task result", own=True).get("status") == "COMPLETED"
    except (StateError, AttributeError):
        return False
