"""Turn a finished run into one results document keyed by owner, with the fields ARC sets.

Only COMPLETED tasks fill scientific fields; FAILED_ESS, FAILED_TERMINAL and CANCELLED tasks are
listed under `failed` with their reason and last geometry, so the host can troubleshoot them.
Nothing is silently dropped. Duplicated inputs (merged at staging) give their result to every
owner that asked for it.

Each owner and the run get a `cost` block: tasks, attempts, CPU-hours (cores x wall time and
measured CPU), summed task wall time and the largest per-task peak memory, over every attempt that
left a result.json (earlier attempts of retried tasks included). A deduplicated task's cost counts
for the owner whose task ran, once. The run's block adds its elapsed time (first start to last
end) and every attempt's duration (`attempt_wall_s`, for the report's histogram).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from pipe_rules.contracts.errors import StateError
from pipe_rules.reporting.cost_sums import CostSummary, add_result
from pipe_rules.reporting.ingest_families import FIELDS
from pipe_rules.store.fsio import atomic_write_json
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import read_manifest
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import load_spec, read_result
from pipe_rules.store.taskstate import read_state

RECORDS_SCHEMA_VERSION = 1
HARTREE_TO_KJ_PER_MOL = 2625.499639479


def _task_entry(layout: RunLayout, task_id: str) -> dict[str, Any]:
    spec = load_spec(layout.spec(task_id))
    state = read_state(layout, task_id)
    entry: dict[str, Any] = {"task_id": task_id, "owner_key": spec.owner_key, "owner_type": spec.owner_type,
                             "status": state.status.value, "attempt_index": state.attempt_index,
                             "charge": spec.input_payload.get("charge"),
                             "multiplicity": spec.input_payload.get("multiplicity"),
                             "ingestion_metadata": spec.ingestion_metadata, "result": None}
    path = layout.result(task_id, state.attempt_index)
    if path.exists():
        entry["result"] = read_result(path)
    entry["failure_class"] = state.failure_class
    entry["failure_reason"] = state.failure_reason
    entry["_attempts"] = _attempt_results(layout, task_id, state.attempt_index, entry["result"])
    return entry


def _attempt_results(layout: RunLayout, task_id: str, current: int, result: dict | None) -> list[dict]:
    """Every attempt's result that exists (earlier ones only for retried tasks): what the task cost."""
    results = []
    for attempt in range(current):
        path = layout.result(task_id, attempt)
        if path.exists():
            try:
                results.append(read_result(path))
            except StateError:  # a damaged old attempt: its cost is unknown, its task is not
                continue
    return results + ([result] if result else [])


def _costs(by_id: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Cost blocks per owner and for the run (see the module docstring)."""
    per_owner: dict[str, CostSummary] = defaultdict(CostSummary)
    tasks: dict[str, int] = defaultdict(int)
    run = CostSummary()
    walls: list[float] = []
    started: list[float] = []
    ended: list[float] = []
    for entry in by_id.values():
        tasks[entry["owner_key"]] += 1
        if "deduplicated_from" in entry:
            continue
        for result in entry["_attempts"]:
            add_result(per_owner[entry["owner_key"]], result)
            add_result(run, result)
            timings = result["timings"]
            walls.append(round(timings["wall_s"], 6))
            started.append(timings["started_at"])
            ended.append(timings["ended_at"])
    owners = {owner: {"tasks": n, **per_owner[owner].as_dict()} for owner, n in tasks.items()}
    block = {"tasks": sum(1 for e in by_id.values() if "deduplicated_from" not in e), **run.as_dict(),
             "started_at": min(started, default=None), "ended_at": max(ended, default=None),
             "elapsed_s": max(ended) - min(started) if started else None, "attempt_wall_s": walls}
    return owners, block


def _owner_fields(family: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    first = entries[0]
    owner: dict[str, Any] = {"owner_type": first["owner_type"], "charge": first["charge"],
                             "multiplicity": first["multiplicity"]}
    done = [e for e in entries if e["status"] == TaskState.COMPLETED.value and e["result"]
            and e["result"]["converged"]]
    if family in ("conf_opt", "conf_sp"):
        conformers = []
        for e in sorted(entries, key=lambda e: e["ingestion_metadata"].get("conformer_index", 0)):
            res = e["result"] if e in done else None
            conformers.append({"conformer_index": e["ingestion_metadata"].get("conformer_index"),
                               "task_id": e["task_id"], "status": e["status"],
                               "converged": bool(res and res["converged"]),
                               "energy_hartree": res["energy_hartree"] if res else None,
                               "geometry": res["geometry"] if res else None})
        owner["conformers"] = conformers
        owner["conformer_energies"] = [c["energy_hartree"] * HARTREE_TO_KJ_PER_MOL if c["energy_hartree"]
                                       is not None else None for c in conformers]
        ok = [c for c in conformers if c["energy_hartree"] is not None]
        if ok:
            best = min(ok, key=lambda c: c["energy_hartree"])
            owner["lowest_conformer_index"] = best["conformer_index"]
            owner["most_stable_xyz"] = best["geometry"]
    elif family in ("species_sp",) and done:
        res = done[0]["result"]
        owner["e_elect_hartree"] = res["energy_hartree"]
        owner["e_elect"] = res["energy_hartree"] * HARTREE_TO_KJ_PER_MOL
        owner["sp_task_id"] = done[0]["task_id"]
    elif family in FIELDS:
        owner.update(FIELDS[family](done))
    elif done:
        owner["results"] = [{"task_id": e["task_id"], **e["result"]["data"],
                             "energy_hartree": e["result"]["energy_hartree"]} for e in done]
    return owner


def _failure(entry: dict[str, Any]) -> dict[str, Any]:
    res = entry["result"] or {}
    return {"task_id": entry["task_id"], "owner_key": entry["owner_key"], "status": entry["status"],
            "attempt_index": entry["attempt_index"],
            "failure_class": res.get("failure_class") or entry["failure_class"],
            "failure_reason": res.get("failure_reason") or entry["failure_reason"],
            "engine_message": res.get("engine_message"), "last_geometry": res.get("geometry"),
            "ingestion_metadata": entry["ingestion_metadata"]}


def build_records(layout: RunLayout) -> dict[str, Any]:
    run = read_run(layout)
    manifest = read_manifest(layout)
    by_id = {entry[0]: _task_entry(layout, entry[0]) for entry in manifest["tasks"]}
    for alias_id, alias in manifest.get("aliases", {}).items():
        base = by_id.get(alias["of"])
        if base is None:
            raise StateError(f"alias {alias_id} points at unknown task {alias['of']}", path=layout.manifest)
        by_id[alias_id] = {**base, "task_id": alias_id, "owner_key": alias["owner_key"],
                           "ingestion_metadata": alias["ingestion_metadata"], "deduplicated_from": alias["of"]}
    grouped: dict[str, list] = defaultdict(list)
    failed = []
    counts: dict[str, int] = defaultdict(int)
    for entry in by_id.values():
        grouped[entry["owner_key"]].append(entry)
        counts[entry["status"]] += 1
        if entry["status"] != TaskState.COMPLETED.value:
            failed.append(_failure(entry))
    owner_costs, run_cost = _costs(by_id)
    owners = {owner: _owner_fields(run.family, entries) for owner, entries in sorted(grouped.items())}
    for owner, fields in owners.items():
        fields["cost"] = owner_costs[owner]
    return {
        "schema_version": RECORDS_SCHEMA_VERSION, "run_id": run.run_id, "run_dir": str(layout.root),
        "family": run.family, "engine": run.engine, "level": run.key["level"], "run_state": run.state.value,
        "ingested_at": time.time(), "task_counts": dict(counts),
        "owners": owners, "failed": sorted(failed, key=lambda f: f["task_id"]), "cost": run_cost,
    }


def ingest(layout: RunLayout, reconciled: bool = False) -> dict[str, Any]:
    """Reconcile (unless the caller just did), then write records.json from what is on disk; it
    never runs a task."""
    if not reconciled:
        reconcile(layout)
    records = build_records(layout)
    atomic_write_json(layout.records, records, pretty=True)
    return records
