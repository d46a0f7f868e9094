"""Ready task specs from a host (pipe_rules.api, ARC): a JSON list, or JSON Lines read as a stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import ConfigError, SpecError, StateError
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.inputs.campaign import RunConfig
from pipe_rules.store.fsio import read_json


def iter_tasks_file(run: RunConfig) -> Iterator[TaskSpec]:
    """Ready specs from a host (pipe_rules.api), each validated and all of the run's one kind: a JSON
    list, or JSON Lines (one spec per line: `.jsonl`), which is read as a stream."""
    path = Path(run.tasks_file)
    items: Iterator[tuple[str, Any]]
    if path.suffix == ".jsonl":
        items = _json_lines(path)
    else:
        try:
            data = read_json(path, "tasks file")
        except StateError as exc:
            raise ConfigError(exc.message, path=path) from None
        if not isinstance(data, list):
            raise ConfigError("must be a non-empty JSON list of task specs", path=path)
        items = ((str(index), item) for index, item in enumerate(data))
    count = 0
    wanted_key = run.homogeneity_key
    for where, item in items:
        try:
            spec = TaskSpec.from_dict(item)
        except SpecError as exc:
            raise ConfigError(exc.message, path=path, field=f"{where}.{exc.field}" if exc.field else where) from None
        key = spec.homogeneity_key  # a dict built per access: once per spec, not once per field
        for name, wanted in wanted_key.items():
            if key[name] != wanted:
                raise ConfigError(f"{key[name]!r} but run {run.name!r} has {wanted!r}: one run "
                                  "holds one kind of task", path=path, field=f"{where}.{name}")
        count += 1
        yield spec
    if not count:
        raise ConfigError("must be a non-empty JSON list of task specs (or JSON Lines, one per line)", path=path)


def _json_lines(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read tasks file: {exc.strerror}", path=path) from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield f"line {number}", json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"invalid JSON ({exc})", path=path, field=f"line {number}") from None


def specs_from_tasks_file(run: RunConfig) -> list[TaskSpec]:
    return list(iter_tasks_file(run))
