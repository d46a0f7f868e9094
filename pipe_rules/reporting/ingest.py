"""Turn a finished run into results keyed by owner, with the fields ARC sets, as a stream.

One owner at a time: its tasks' specs, states and results are read, its record written as one
line of records.jsonl (store/records_io.py), and forgotten, so 1,000,000 tasks are ingested in
bounded memory; summary.json, with the run's counts and cost, is written last.

Only COMPLETED tasks fill scientific fields; FAILED_ESS, FAILED_TERMINAL and CANCELLED tasks are
listed under `failed` with their reason and last geometry, so the host can troubleshoot them.
Nothing is silently dropped. Duplicated inputs (merged at staging) give their result to every
owner that asked for it.

Each owner and the run get a `cost` block: tasks, attempts, CPU-hours (cores x wall time and
measured CPU), summed task wall time and the largest per-task peak memory, over every attempt that
left a result.json (earlier attempts of retried tasks included). A deduplicated task's cost counts
for the owner whose task ran, once. The run's block adds its elapsed time (first start to last
end) and an even sample of the attempts' durations (`attempt_wall_s_sample`, for the report).
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from pipe_rules.contracts.errors import StateError
from pipe_rules.contracts.records import RECORDS_SCHEMA_VERSION
from pipe_rules.reporting.cost_sums import CostSummary, add_result
from pipe_rules.reporting.ingest_families import FIELDS
from pipe_rules.store.final_versions import FinalVersions
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import check_whole, iter_aliases
from pipe_rules.store.owner_index import load_owner_index
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.records_io import RecordsWriter
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TERMINAL_TASK_STATES, TaskState
from pipe_rules.store.task_files import load_spec, read_result
from pipe_rules.store.taskstate import TaskStateRecord, read_state, read_version

HARTREE_TO_KJ_PER_MOL = 2625.499639479


def _ended_state(layout: RunLayout, task_id: str, generation: int) -> TaskStateRecord:
    """The state, opened by name at `generation` when a reconcile found it ended there (store/final_versions.py)."""
    if generation:
        state = read_version(layout, task_id, generation)
        if state is not None and state.status in TERMINAL_TASK_STATES:
            return state
    return read_state(layout, task_id)


def _task_entry(layout: RunLayout, task_id: str, generation: int = 0) -> dict[str, Any]:
    spec = load_spec(layout.spec(task_id))
    state = _ended_state(layout, task_id, generation)
    entry: dict[str, Any] = {"task_id": task_id, "owner_key": spec.owner_key, "owner_type": spec.owner_type,
                             "status": state.status.value, "attempt_index": state.attempt_index,
                             "charge": spec.input_payload.get("charge"),
                             "multiplicity": spec.input_payload.get("multiplicity"),
                             "ingestion_metadata": spec.ingestion_metadata, "result": None}
    entry["result"] = read_result(layout.result(task_id, state.attempt_index), missing_ok=True)
    entry["failure_class"] = state.failure_class
    entry["failure_reason"] = state.failure_reason
    entry["_attempts"] = _attempt_results(layout, task_id, state.attempt_index, entry["result"])
    return entry


def _attempt_results(layout: RunLayout, task_id: str, current: int, result: dict | None) -> list[dict]:
    """Every attempt's result that exists (earlier ones only for retried tasks): what the task cost."""
    results = []
    for attempt in range(current):
        try:
            found = read_result(layout.result(task_id, attempt), missing_ok=True)
        except StateError:  # a damaged old attempt: its cost is unknown, its task is not
            continue
        if found is not None:
            results.append(found)
    return results + ([result] if result else [])


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


SAMPLE = 10_000  # attempt durations kept for the report's histogram (an even sample beyond that)


class _RunTotals:
    """What the summary adds up over the whole run, in constant memory."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.cost = CostSummary()
        self.tasks = 0
        self.started: float | None = None
        self.ended: float | None = None
        self.walls: list[float] = []
        self.n_walls = 0
        self._random = random.Random(13)

    def attempt(self, result: dict) -> None:
        add_result(self.cost, result)
        timings = result["timings"]
        self.started = min(self.started or timings["started_at"], timings["started_at"])
        self.ended = max(self.ended or timings["ended_at"], timings["ended_at"])
        self.n_walls += 1  # reservoir sample: each attempt kept with the same chance
        wall = round(timings["wall_s"], 6)
        if len(self.walls) < SAMPLE:
            self.walls.append(wall)
        elif (at := self._random.randrange(self.n_walls)) < SAMPLE:
            self.walls[at] = wall

    def block(self) -> dict[str, Any]:
        elapsed = self.ended - self.started if self.started is not None and self.ended is not None else None
        return {"tasks": self.tasks, **self.cost.as_dict(), "started_at": self.started, "ended_at": self.ended,
                "elapsed_s": elapsed, "attempt_wall_s_sample": self.walls, "attempt_wall_s_count": self.n_walls}


def _owner_groups(layout: RunLayout, final: FinalVersions | None
                  ) -> Iterator[tuple[str, list[tuple[str, int]], list[tuple[str, dict]]]]:
    """(owner, its staged task ids each with the generation it ended at (0: unknown), its aliases)
    for every owner in sorted order, from the owner index: numpy columns, so 1,000,000 tasks group
    in a second and ~50 MB."""
    noted, ended_at = final.noted() if final is not None else (None, None)
    index = load_owner_index(layout, previous=noted)
    if index is not noted:  # nothing noted, or the manifest changed since
        ended_at = None
    order = np.argsort(index.owner_of, kind="stable")
    grouped = index.owner_of[order]
    bounds = np.searchsorted(grouped, np.arange(len(index.owners) + 1))
    aliases: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for alias_id, alias in iter_aliases(layout):
        aliases[str(alias["owner_key"])].append((alias_id, alias))
    for position, owner in enumerate(index.owners):
        at = order[bounds[position]:bounds[position + 1]]
        generations = ended_at[at].tolist() if ended_at is not None else [0] * len(at)
        ids = sorted(zip((t.decode() for t in index.task_ids[at].tolist()), generations))
        yield owner, ids, aliases.pop(owner, [])


def _owner_record(layout: RunLayout, family: str, owner: str, ids: list[tuple[str, int]],
                  aliases: list[tuple[str, dict]], totals: _RunTotals, writer: RecordsWriter) -> None:
    entries = [_task_entry(layout, task_id, generation) for task_id, generation in ids]
    for alias_id, alias in aliases:
        base = _task_entry(layout, alias["of"])
        entries.append({**base, "task_id": alias_id, "owner_key": alias["owner_key"],
                        "ingestion_metadata": alias["ingestion_metadata"], "deduplicated_from": alias["of"]})
    cost = CostSummary()
    for entry in sorted(entries, key=lambda e: e["task_id"]):
        totals.counts[entry["status"]] += 1
        if entry["status"] != TaskState.COMPLETED.value:
            writer.failed(_failure(entry))
        if "deduplicated_from" in entry:
            continue
        totals.tasks += 1
        for result in entry["_attempts"]:
            add_result(cost, result)
            totals.attempt(result)
    if not entries:
        return
    fields = _owner_fields(family, entries)
    writer.owner({"owner_key": owner, **fields, "cost": {"tasks": len(entries), **cost.as_dict()}})


def ingest(layout: RunLayout, reconciled: bool = False, final: FinalVersions | None = None) -> dict[str, Any]:
    """Reconcile (unless the caller just did), then write records.jsonl, failed.jsonl and last
    summary.json from what is on disk, one owner at a time; it never runs a task. Returns the summary.
    `final`: where the caller's reconcile found ended tasks' states (store/final_versions.py)."""
    if not reconciled:
        final = FinalVersions(layout)
        reconcile(layout, final=final)
    run = read_run(layout)
    check_whole(layout, run.n_tasks)
    totals = _RunTotals()
    writer = RecordsWriter(layout)
    try:
        for owner, ids, aliases in _owner_groups(layout, final):
            _owner_record(layout, run.family, owner, ids, aliases, totals, writer)
    except BaseException:
        writer.abort()
        raise
    summary = {"schema_version": RECORDS_SCHEMA_VERSION, "run_id": run.run_id, "run_dir": str(layout.root),
               "family": run.family, "engine": run.engine, "level": run.key["level"],
               "run_state": read_run(layout).state.value, "ingested_at": time.time(),
               "task_counts": dict(totals.counts), "cost": totals.block()}
    written = writer.close(summary)  # not read back: a second Snakemake's ingest job may have removed it already
    _read_ledgers_for_status(layout)
    return written


def _read_ledgers_for_status(layout: RunLayout) -> None:
    """Bring the ledgers' summary cache (store/ledger_summary.py) up to every line, so the first
    `status` after ingestion does not parse them all itself: 1.96 s -> 0.28 s at 1,000,000 tasks,
    where ingestion itself takes minutes. Best effort: status reads whatever the cache lacks."""
    from pipe_rules.store.ledger_summary import LedgerSummary
    from pipe_rules.store.owner_index import load_owner_index

    try:
        LedgerSummary(layout.root).refresh(load_owner_index(layout))
    except (OSError, ValueError):
        pass
