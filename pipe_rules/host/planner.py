"""Decide which ready tasks to pipe, as ARC's scheduler would: alike tasks together, small groups alone.

Tasks are grouped by the key staging enforces for a run (family, engine, level, cores, memory,
walltime: TaskSpec.homogeneity_key). A group of at least `min_batch_size` tasks becomes one run;
the others go back to the host for individual submission, where one job per task costs less than
a pipe run's start-up. Every task gets a reason, so the host can log why it went either way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from pipe_rules.contracts.errors import ConfigError, SpecError
from pipe_rules.contracts.spec import HOMOGENEITY_FIELDS, TaskSpec

DEFAULT_MIN_BATCH_SIZE = 10


@dataclass(frozen=True)
class PlannedRun:
    name: str  # a safe run name, stable for the same tasks: pass it to PipeAPI.create_run
    key: dict[str, Any]
    tasks: tuple[TaskSpec, ...]


@dataclass(frozen=True)
class Plan:
    runs: tuple[PlannedRun, ...]
    individual: tuple[TaskSpec, ...]  # submit these one by one
    reasons: dict[str, str]  # task_id -> why it was or was not piped
    min_batch_size: int

    def reason(self, task_id: str) -> str:
        return self.reasons[task_id]


def describe_key(key: dict[str, Any]) -> str:
    cores = key["cores"]
    return (f"{key['family']}, {key['engine']}, {key['level']}, {cores} core{'s' if cores != 1 else ''}, "
            f"{key['memory_mb']} MB, {key['walltime_min']} min")


def run_name(key: dict[str, Any], task_ids: list[str], prefix: str = "") -> str:
    """family_engine_level_<8 hex of the key and task ids>: readable, unique per group, a safe id."""
    digest = hashlib.sha1(repr((sorted(key.items()), sorted(task_ids))).encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{prefix}{key['family']}_{key['engine']}_{key['level']}")
    return f"{readable.lstrip('.-')[:54]}_{digest}"


def plan(tasks: list[TaskSpec], min_batch_size: int = DEFAULT_MIN_BATCH_SIZE, prefix: str = "") -> Plan:
    """Group `tasks` by homogeneity key (in order of first appearance) and pipe the big groups."""
    if min_batch_size < 1:
        raise ConfigError(f"{min_batch_size} must be at least 1", field="min_batch_size")
    groups: dict[tuple, list[TaskSpec]] = {}
    seen: set[str] = set()
    for index, spec in enumerate(tasks):
        if spec.task_id in seen:
            raise ConfigError(f"task id {spec.task_id!r} is given twice", field=f"tasks.{index}.task_id")
        seen.add(spec.task_id)
        groups.setdefault(tuple(spec.homogeneity_key[f] for f in HOMOGENEITY_FIELDS), []).append(spec)
    runs: list[PlannedRun] = []
    reasons: dict[str, str] = {}
    for members in groups.values():
        key = members[0].homogeneity_key
        count = len(members)
        if count >= min_batch_size:
            name = run_name(key, [s.task_id for s in members], prefix)
            runs.append(PlannedRun(name, key, tuple(members)))
            why = f"piped: run {name} with {count} alike tasks ({describe_key(key)})"
        else:
            why = (f"not piped: only {count} alike task{'s' if count != 1 else ''} ({describe_key(key)}), "
                   f"below min_batch_size {min_batch_size}")
        reasons.update((spec.task_id, why) for spec in members)
    piped = {spec.task_id for run in runs for spec in run.tasks}
    individual = tuple(spec for spec in tasks if spec.task_id not in piped)  # in the host's order
    return Plan(tuple(runs), individual, reasons, min_batch_size)


def homogeneous_tasks(tasks: list[TaskSpec | dict]) -> list[TaskSpec]:
    """Validated specs of ONE run (PipeAPI.create_run): all of one kind (family, engine, level,
    resources) and with unique ids; anything else is a ConfigError naming tasks.<index>.<field>."""
    if not tasks:
        raise ConfigError("no tasks given", field="tasks")
    specs = []
    for index, task in enumerate(tasks):
        try:
            specs.append(task if isinstance(task, TaskSpec) else TaskSpec.from_dict(task))
        except SpecError as exc:
            where = f"tasks.{index}.{exc.field}" if exc.field else f"tasks.{index}"
            raise ConfigError(exc.message, field=where) from None
    key, seen = specs[0].homogeneity_key, set()
    for index, spec in enumerate(specs):
        for what, value in spec.homogeneity_key.items():
            if value != key[what]:
                raise ConfigError(f"{value!r} but tasks.0 has {key[what]!r}: one run holds one kind of task "
                                  "(group them with pipe_rules.api.plan)", field=f"tasks.{index}.{what}")
        if spec.task_id in seen:
            raise ConfigError(f"task id {spec.task_id!r} is given twice", field=f"tasks.{index}.task_id")
        seen.add(spec.task_id)
    return specs
