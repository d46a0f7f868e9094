"""Stage a run: write specs, initial states and queue tokens, idempotently.

Staging the same campaign twice adds nothing and changes nothing; a spec already on disk is
never overwritten (a different input under the same task id is refused), and states and results
of staged tasks are never touched. Everything is validated before the first write.
Two stagers of one run at once (two Snakemake invocations) are safe: every spec, state and
token is created only if absent, and the manifest is merged under a short lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipe_rules.contracts.errors import ConfigError, PipeRulesError, SpecError, StagingError, StateError
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.engines import UnknownEngineError, get_engine
from pipe_rules.inputs.builders import specs_from_records, specs_from_species
from pipe_rules.inputs.campaign import Campaign, RunConfig
from pipe_rules.inputs.spec_parts import check_species
from pipe_rules.store.fsio import atomic_write_json, read_json, touch_new, write_new_json
from pipe_rules.store.layout import RunLayout, shard_name
from pipe_rules.store.locks import locked
from pipe_rules.store.manifest import merge_manifest, read_manifest
from pipe_rules.store.owner_index import load_owner_index
from pipe_rules.store.runrecord import RunRecord, read_run, update_run
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


def check_engine(campaign: Campaign, run: RunConfig) -> None:
    where = f"runs.{campaign.runs.index(run)}"
    try:
        engine = get_engine(run.engine)
    except UnknownEngineError as exc:
        raise ConfigError(str(exc), path=campaign.source, field=f"{where}.engine") from None
    if run.family not in engine.families:
        raise ConfigError(f"engine {run.engine!r} cannot run family {run.family!r} "
                          f"(it runs: {', '.join(sorted(engine.families))})", path=campaign.source, field=f"{where}.family")
    if engine.levels is not None and run.level not in engine.levels:
        raise ConfigError(f"engine {run.engine!r} has no level {run.level!r} (levels: {', '.join(sorted(engine.levels))})",
                          path=campaign.source, field=f"{where}.level")


def check_campaign(campaign: Campaign) -> None:
    """The whole campaign as staging will see it, before anything is staged or submitted: every
    run's engine, family and level; its tasks file's specs; every species' structure (RDKit) and
    geometries; and no run
    already staged with another family/engine/level/resources. Raises the same one-line errors
    staging would."""
    for run in campaign.runs:
        check_engine(campaign, run)
        if run.tasks_file:
            specs_from_tasks_file(run)
        layout = RunLayout(campaign.run_dir(run.name))
        if layout.run_json.exists():
            _check_key(read_run(layout), run, layout)
    for species in campaign.species:
        check_species(species)


def _check_key(record: RunRecord, run: RunConfig, layout: RunLayout) -> None:
    if record.key != run.homogeneity_key:
        diff = {k: (record.key.get(k), v) for k, v in run.homogeneity_key.items() if record.key.get(k) != v}
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise StagingError(f"run was staged with a different family/engine/level/resources ({changes}); "
                           "one run holds one kind of task: give the run a new name", path=layout.run_json)


def build_specs(campaign: Campaign, run: RunConfig, skipped: list[str] | None = None) -> list[TaskSpec]:
    """The run's specs; owners that give no task of the family are appended to `skipped`."""
    check_engine(campaign, run)
    if run.tasks_file:
        return specs_from_tasks_file(run)
    try:
        if run.from_run:
            source = RunLayout(campaign.run_dir(run.from_run))
            records = read_json(source.records, f"results of run {run.from_run!r}")
            return list(specs_from_records(campaign, run, records, skipped))
        return list(specs_from_species(campaign, run, skipped))
    except ValueError as exc:  # chemistry input RDKit or the xyz parser refused
        raise ConfigError(str(exc), path=campaign.source, field="species") from None


def specs_from_tasks_file(run: RunConfig) -> list[TaskSpec]:
    """Ready specs from a host (pipe_rules.api): each validated, and all of the run's one kind."""
    path = Path(run.tasks_file)
    try:
        data = read_json(path, "tasks file")
    except StateError as exc:
        raise ConfigError(exc.message, path=path) from None
    if not isinstance(data, list) or not data:
        raise ConfigError("must be a non-empty JSON list of task specs", path=path)
    specs = []
    for index, item in enumerate(data):
        try:
            spec = TaskSpec.from_dict(item)
        except SpecError as exc:
            where = f"{index}.{exc.field}" if exc.field else str(index)
            raise ConfigError(exc.message, path=path, field=where) from None
        for name, wanted in run.homogeneity_key.items():
            if spec.homogeneity_key[name] != wanted:
                raise ConfigError(f"{spec.homogeneity_key[name]!r} but run {run.name!r} has {wanted!r}: one run "
                                  "holds one kind of task", path=path, field=f"{index}.{name}")
        specs.append(spec)
    return specs


def _dedupe(specs: list[TaskSpec]) -> tuple[list[TaskSpec], dict[str, dict]]:
    """Keep the first spec of each fingerprint; the others become aliases that share its result."""
    kept: dict[str, TaskSpec] = {}
    aliases: dict[str, dict] = {}
    ids: set[str] = set()
    for spec in specs:
        if spec.task_id in ids:
            raise SpecError(f"task id {spec.task_id!r} generated twice (species labels that differ only in "
                            "unsafe characters?)", field="task_id")
        ids.add(spec.task_id)
        first = kept.get(spec.fingerprint)
        if first is None:
            kept[spec.fingerprint] = spec
        else:
            aliases[spec.task_id] = {"of": first.task_id, "owner_key": spec.owner_key,
                                     "ingestion_metadata": spec.ingestion_metadata}
    return list(kept.values()), aliases


def stage_run(campaign: Campaign, run_name: str) -> StageReport:
    run = campaign.run(run_name)
    layout = RunLayout(campaign.run_dir(run.name))
    if not run.from_run and not run.tasks_file:
        for species in campaign.species:  # one line naming the file, field and species, before any write
            if run.species is None or species.label in run.species:
                check_species(species)
    skipped: list[str] = []
    specs, aliases = _dedupe(build_specs(campaign, run, skipped))
    record = _open_run(campaign, run, layout)
    old = read_manifest(layout)
    known = {entry[0]: entry for entry in old["tasks"]}
    for spec in specs:  # refuse before writing anything
        entry = known.get(spec.task_id)
        if entry is not None and entry[2] != spec.fingerprint:
            raise StagingError(f"task {spec.task_id} is already staged with a different input; refusing to "
                               "overwrite it (use a new run name to change inputs)", path=layout.spec(spec.task_id))
    new = [s for s in specs if s.task_id not in known]
    start = len(old["tasks"])
    ours: list[list[str]] = []
    created = 0
    made: set = set()
    for offset, spec in enumerate(new):
        shard, made_state = _write_task(layout, spec, shard_name((start + offset) % run.shards),
                                        run.max_attempts, made)
        created += made_state
        ours.append([spec.task_id, shard, spec.fingerprint])
    new_aliases = {k: v for k, v in aliases.items() if k not in known}
    removed, removed_owners = _removed(layout, old, {s.task_id for s in specs} | set(aliases))
    with locked(layout.manifest_lock, campaign.lock_mode):  # a concurrent stager may have written it meanwhile
        entries, merged_aliases = merge_manifest(read_manifest(layout), ours, new_aliases)
        atomic_write_json(layout.manifest, {"run_id": record.run_id, "tasks": entries, "aliases": merged_aliases})

        def staged(rec: RunRecord) -> None:
            rec.n_tasks = len(entries)
            rec.shards = run.shards
            if created or rec.state is RunState.CREATED:
                rec.move(RunState.STAGED, f"staged {created} new task(s)")

        update_run(layout, campaign.lock_mode, staged)
    if created:  # the specs are in the page cache now: the first `status` need not read 100,000 of them
        load_owner_index(layout)
    return StageReport(layout.root, created, len(specs) - created, len(aliases), tuple(skipped), removed,
                       removed_owners)


def _removed(layout: RunLayout, old: dict, current: set[str]) -> tuple[int, tuple[str, ...]]:
    """Staged tasks the config no longer makes (a species taken out): counted and named, never touched."""
    gone = [entry[0] for entry in old["tasks"] if entry[0] not in current]
    owners = {alias["owner_key"] for task_id, alias in old["aliases"].items() if task_id not in current}
    for task_id in gone:
        try:
            owners.add(load_spec(layout.spec(task_id)).owner_key)
        except PipeRulesError:
            owners.add(task_id)
    gone_aliases = [task_id for task_id in old["aliases"] if task_id not in current]
    return len(gone) + len(gone_aliases), tuple(sorted(owners))


def _open_run(campaign: Campaign, run: RunConfig, layout: RunLayout) -> RunRecord:
    """Create run.json, or check that the existing run has the same homogeneity key."""
    if layout.run_json.exists():
        record = read_run(layout)
        _check_key(record, run, layout)
        return record
    for sub in (layout.tasks_dir, layout.pending_dir, layout.inflight_dir, layout.shards_dir,
                layout.results_dir, layout.logs_dir, layout.root / "locks"):
        sub.mkdir(parents=True, exist_ok=True)
    record = RunRecord(
        run_id=f"{campaign.name}.{run.name}", campaign=campaign.name, name=run.name, key=run.homogeneity_key,
        lock_mode=campaign.lock_mode, shards=run.shards, max_attempts=run.max_attempts, lease_s=run.lease_s,
        heartbeat_s=run.heartbeat_s, clock_skew_s=run.clock_skew_s, linger_s=run.linger_s,
    )
    if not write_new_json(layout.run_json, record.as_dict()):
        return read_run(layout)  # another stager won the race
    return record


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
    folder.mkdir(exist_ok=True)
    if (not write_new_json(layout.spec(spec.task_id), spec.as_dict())
            and load_spec(layout.spec(spec.task_id)).fingerprint != spec.fingerprint):
        raise StagingError("a different spec already exists here; refusing to overwrite it",
                           path=layout.spec(spec.task_id))
    if write_initial_state(layout, TaskStateRecord(task_id=spec.task_id, shard=shard, max_attempts=max_attempts)):
        touch_new(token)
        return shard, True
    try:  # staged by another stager: list it under the shard its state and token use
        return read_state(layout, spec.task_id).shard, False
    except StateError:  # corrupt: `pipe-rules reconcile` rebuilds it
        return shard, False


__all__ = ["StageReport", "stage_run", "build_specs", "check_campaign", "specs_from_tasks_file"]
