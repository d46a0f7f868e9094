"""Stage a run: write specs, initial states and queue tokens, idempotently.

Staging the same campaign twice adds nothing and changes nothing; a spec already on disk is
never overwritten (a different input under the same task id is refused), and states and results
of staged tasks are never touched. Everything is checked before the first write: the specs are
read twice, once to check and once to write, in batches, so a run of 1,000,000 tasks from a JSON
Lines tasks file is staged in bounded memory (~100 bytes a task for the checks).
Two stagers of one run at once (two Snakemake invocations) are safe: every spec, state and
token is created only if absent, and the manifest is appended to under a short lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipe_rules.contracts.errors import ConfigError, SpecError, StagingError, StateError
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.inputs.builders import specs_from_records, specs_from_species
from pipe_rules.inputs.campaign import Campaign, RunConfig
from pipe_rules.inputs.campaign_checks import check_engine, check_key
from pipe_rules.inputs.spec_parts import check_species
from pipe_rules.inputs.tasks_file import iter_tasks_file, specs_from_tasks_file
from pipe_rules.store.filesystem import choose_lock_mode, describe
from pipe_rules.store.fsio import touch_new, write_new_json
from pipe_rules.store.layout import RunLayout, shard_name
from pipe_rules.store.lifecycle import cancel, ensure_pending_token
from pipe_rules.store.locks import locked
from pipe_rules.store.manifest import Entry, iter_aliases, iter_entries, migrate_v1
from pipe_rules.store.manifest_append import Known, ManifestWriter
from pipe_rules.store.owner_index import id_array, load_owner_index
from pipe_rules.store.records_io import read_owner_records
from pipe_rules.store.runrecord import RUN_SCHEMA_VERSION, RunRecord, create_run, read_run, run_exists, update_run
from pipe_rules.store.states import RunState
from pipe_rules.store.task_files import load_spec
from pipe_rules.store.taskstate import TaskStateRecord, read_state, write_initial_state


@dataclass(frozen=True)
class StageReport:
    run_dir: Path
    new_tasks: int
    existing_tasks: int
    duplicates: int
    skipped: tuple[str, ...] = ()  # "owner: why it gave no task of this family"
    removed_tasks: int = 0  # staged earlier, no longer made by the config: kept, results and all
    removed_owners: tuple[str, ...] = ()

    def line(self) -> str:
        text = (f"{self.run_dir}: {self.new_tasks} new task(s), {self.existing_tasks} already staged, "
                f"{self.duplicates} duplicate input(s) merged")
        if self.skipped:
            text += f"; skipped {len(self.skipped)} owner(s) without input: {'; '.join(self.skipped)}"
        if self.removed_tasks:
            text += (f"; kept {self.removed_tasks} staged task(s) of {len(self.removed_owners)} owner(s) no longer "
                     f"in the config, with their results: {', '.join(self.removed_owners)}")
        return text


def build_specs(campaign: Campaign, run: RunConfig, skipped: list[str] | None = None) -> list[TaskSpec]:
    """The run's specs in memory (small runs, the planner, tests); staging reads them as a stream."""
    return list(spec_source(campaign, run, skipped)())


def spec_source(campaign: Campaign, run: RunConfig,
                skipped: list[str] | None = None) -> Callable[[], Iterator[TaskSpec]]:
    """A function that yields the run's specs afresh on each call (staging reads them twice: once
    to check everything, once to write). A tasks file is read again from disk, line by line for
    JSON Lines, so 1,000,000 specs never sit in memory; specs built from species or an earlier
    run's records are built once and kept."""
    check_engine(campaign, run)
    if run.tasks_file:
        return lambda: iter_tasks_file(run)
    try:
        if run.from_run:
            source = RunLayout(campaign.run_dir(run.from_run))
            family, owners = read_owner_records(source, f"results of run {run.from_run!r}")
            specs = list(specs_from_records(campaign, run, family, owners, skipped))
        else:
            specs = list(specs_from_species(campaign, run, skipped))
    except ValueError as exc:  # chemistry input RDKit or the xyz parser refused
        raise ConfigError(str(exc), path=campaign.source, field="species") from None
    return lambda: iter(specs)


CHUNK = 5000  # specs per batch of writes and manifest append


def _check(layout: RunLayout, source: Callable[[], Iterator[TaskSpec]]) -> tuple[Known, dict[int, str], int, tuple]:
    """Pass 1, no writes: duplicate ids, inputs changed since an earlier staging, merged duplicates.
    Returns what is staged already, {position: first task id} of inputs merged into an earlier
    one, and the number of specs. Columns of numpy arrays: ~100 bytes a spec."""
    known = Known.of(layout)
    ids, fps = [], []
    for chunk in _chunks(source()):
        chunk_ids = [s.task_id for s in chunk]
        chunk_fps = [bytes.fromhex(s.fingerprint) for s in chunk]
        for task_id, fp, staged in zip(chunk_ids, chunk_fps, known.fingerprints(chunk_ids)):
            if staged is not None and staged != fp:
                raise StagingError(f"task {task_id} is already staged with a different input; refusing to "
                                   "overwrite it (use a new run name to change inputs)", path=layout.spec(task_id))
        ids.append(id_array(chunk_ids))
        fps.append(np.array(chunk_fps, dtype="S32"))
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype="S1")
    all_fps = np.concatenate(fps) if fps else np.zeros(0, dtype="S32")
    order = np.argsort(all_ids, kind="stable")
    twice = np.nonzero(all_ids[order][1:] == all_ids[order][:-1])[0]
    if len(twice):
        task_id = all_ids[order][twice[0]].decode()
        raise SpecError(f"task id {task_id!r} generated twice (species labels that differ only in "
                        "unsafe characters?)", field="task_id")
    order = np.argsort(all_fps, kind="stable")
    in_order = all_fps[order]
    starts = np.ones(len(order), dtype=bool)  # where a run of equal fingerprints begins
    starts[1:] = in_order[1:] != in_order[:-1]
    first = np.flatnonzero(starts)[np.cumsum(starts) - 1]  # each position's run start (sorted order)
    # the first spec of each fingerprint is computed; the others share its result
    merged = {int(order[at]): all_ids[order[first[at]]].decode() for at in np.flatnonzero(~starts).tolist()}
    return known, merged, len(all_ids), _removed(layout, known, all_ids)


def _chunks(specs: Iterator[TaskSpec]) -> Iterator[list[TaskSpec]]:
    chunk: list[TaskSpec] = []
    for spec in specs:
        chunk.append(spec)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def stage_run(campaign: Campaign, run_name: str) -> StageReport:
    run = campaign.run(run_name)
    layout = RunLayout(campaign.run_dir(run.name))
    if not run.from_run and not run.tasks_file:
        parsed: set = set()
        for species in campaign.species:  # one line naming the file, field and species, before any write
            if run.species is None or species.label in run.species:
                check_species(species, parsed)
    skipped: list[str] = []
    source = spec_source(campaign, run, skipped)
    if layout.manifest_v1.exists():  # a run staged by schema 1: its manifest becomes two streams
        with locked(layout.manifest_lock, read_run(layout).lock_mode):
            migrate_v1(layout)
    known, merged, total, removed = _check(layout, source)  # refuse before writing anything
    record = _open_run(campaign, run, layout)
    if record.state is RunState.CANCELLED:  # refused before anything is written
        raise StagingError("run was cancelled; nothing staged (give the campaign's run a new name to compute it "
                           "again)", path=layout.run_json)
    lock_mode = record.lock_mode  # decided once, when the run was created: never mixed
    writer = ManifestWriter(layout, lock_mode, known)
    ours: list[np.ndarray] = []  # ids whose state this stager created, a numpy bytes array per batch
    # (1,000,000 Python strings were ~70 MB, alive while the owner index is built at the end)
    created = new = 0
    made: set = set()
    position = 0
    for chunk in _chunks(source()):
        mine: list[str] = []
        for spec in chunk:
            first = merged.get(position)
            position += 1
            if first is not None:
                writer.alias(spec.task_id, {"of": first, "owner_key": spec.owner_key,
                                            "ingestion_metadata": spec.ingestion_metadata})
                continue
            if known.has(spec.task_id):
                continue
            shard, made_state = _write_task(layout, spec, shard_name((known.count + new) % run.shards),
                                            run.max_attempts, made)
            new += 1
            created += made_state
            if made_state:
                mine.append(spec.task_id)
            writer.add(Entry(spec.task_id, shard, spec.fingerprint, spec.owner_key))
        writer.flush()
        ours.append(id_array(mine))
    n_tasks = writer.close()

    def staged(rec: RunRecord) -> None:
        if rec.state is RunState.CANCELLED:
            raise StagingError("run was cancelled while this stager wrote its tasks; they are cancelled too",
                               path=layout.run_json)
        rec.n_tasks = n_tasks
        rec.shards = run.shards
        rec.schema_version = RUN_SCHEMA_VERSION
        if created or rec.state is RunState.CREATED:
            rec.move(RunState.STAGED, f"staged {created} new task(s)")

    try:
        update_run(layout, lock_mode, staged)
    except StagingError:  # `cancel` ran meanwhile and may have missed our new tasks
        for task_id in (t.decode() for batch in ours for t in batch.tolist()):
            cancel(layout, task_id, lock_mode, by="staging (run cancelled)")
        raise
    if created:  # what `status` maps token names to owners with: built now, not on its first call
        load_owner_index(layout)
    return StageReport(layout.root, created, total - len(merged) - created, len(merged), tuple(skipped),
                       *removed)


def _removed(layout: RunLayout, known: Known, current: np.ndarray) -> tuple[int, tuple[str, ...]]:
    """Staged tasks (and aliases) the config no longer makes (a species taken out): counted and
    their owners named, never touched. `current`: every id the config makes now (numpy bytes)."""
    gone: set[str] = set()
    if known.count:
        gone = {t.decode() for t in known.ids[~np.isin(known.ids, current)].tolist()}
    listed = sorted(known.aliases)
    present = np.isin(id_array(listed), current) if listed else np.zeros(0, dtype=bool)
    gone_aliases = {alias for alias, here in zip(listed, present.tolist()) if not here}
    owners = {e.owner or e.task_id for e in iter_entries(layout) if e.task_id in gone} if gone else set()
    owners |= {str(alias["owner_key"]) for a, alias in iter_aliases(layout) if a in gone_aliases}
    return len(gone) + len(gone_aliases), tuple(sorted(owners))


def _open_run(campaign: Campaign, run: RunConfig, layout: RunLayout) -> RunRecord:
    """Create run.json, or check that the existing run has the same homogeneity key."""
    if run_exists(layout):
        record = read_run(layout)
        if campaign.lock_mode != "auto" and record.lock_mode != campaign.lock_mode:
            raise StagingError(f"run was staged with lock_mode {record.lock_mode!r}, the config now says "
                               f"{campaign.lock_mode!r}; one run uses one lock mode: set it back or give the run a "
                               "new name", path=layout.run_json)
        check_key(record, run, layout)
        return record
    for sub in (layout.tasks_dir, layout.pending_dir, layout.inflight_dir, layout.shards_dir,
                layout.results_dir, layout.logs_dir, layout.root / "locks"):
        sub.mkdir(parents=True, exist_ok=True)
    fs = describe(layout.root)
    mode, why = choose_lock_mode(campaign.lock_mode, fs)
    if mode is None:
        raise ConfigError(why, path=campaign.source, field="lock_mode")
    record = RunRecord(
        run_id=f"{campaign.name}.{run.name}", campaign=campaign.name, name=run.name, key=run.homogeneity_key,
        lock_mode=mode, shards=run.shards, max_attempts=run.max_attempts, lease_s=run.lease_s,
        heartbeat_s=run.heartbeat_s, clock_skew_s=run.clock_skew_s, linger_s=run.linger_s,
        lock_lease_s=campaign.lock_lease_s, filesystem={**fs, "lock_mode": why},
    )
    if not create_run(layout, record):
        return read_run(layout)  # another stager won the race
    return record


def _made_now(folder) -> bool:
    """mkdir; True if this call made the folder, False if it was there (a folder; anything else raises)."""
    try:
        os.mkdir(folder)
        return True
    except FileExistsError:
        if not os.path.isdir(folder):
            raise
        return False


def _write_task(layout: RunLayout, spec: TaskSpec, shard: str, max_attempts: int, made: set) -> tuple[str, bool]:
    """Create the task's spec, state and queue token unless they exist; return the task's shard and
    whether this call created its state. Every first write is a create-if-absent (link), so of
    several stagers racing on one task exactly one writes its state and token, and a state a
    worker has already moved on is never overwritten; an existing spec is only compared."""
    folder = layout.task_dir(spec.task_id)
    if folder.parent not in made:
        folder.parent.mkdir(parents=True, exist_ok=True)
        made.add(folder.parent)
    token = layout.pending_token(shard, spec.task_id)
    if token.parent not in made:
        token.parent.mkdir(parents=True, exist_ok=True)
        made.add(token.parent)
    fresh = _made_now(folder)  # then no state can exist yet: none is looked for
    _made_now(layout.attempts_dir(spec.task_id))  # here, not on the drain path: one mkdir less per task there
    if (not write_new_json(layout.spec(spec.task_id), spec.as_dict())
            and load_spec(layout.spec(spec.task_id)).fingerprint != spec.fingerprint):
        raise StagingError("a different spec already exists here; refusing to overwrite it",
                           path=layout.spec(spec.task_id))
    if write_initial_state(layout, TaskStateRecord(task_id=spec.task_id, shard=shard, max_attempts=max_attempts),
                           fresh=fresh):
        touch_new(token)
        return shard, True
    try:  # staged before (by another stager, or by one killed before it made the token)
        state = read_state(layout, spec.task_id)
    except StateError:  # corrupt: `pipe-rules reconcile` rebuilds it
        return shard, False
    ensure_pending_token(layout, state)
    return state.shard, False


__all__ = ["StageReport", "stage_run", "build_specs", "spec_source", "specs_from_tasks_file",
           "iter_tasks_file"]
