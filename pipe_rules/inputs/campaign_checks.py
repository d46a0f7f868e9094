"""The checks staging makes before it writes anything, also run alone before a campaign is submitted
(`pipe-rules run`, doctor, PipeAPI): each run's engine, family and level, its tasks file, every
species' structure, and that a run already staged holds the same kind of task.
"""

from __future__ import annotations

from collections.abc import Collection

from pipe_rules.contracts.errors import ConfigError, StagingError
from pipe_rules.engines import UnknownEngineError, get_engine
from pipe_rules.inputs.campaign import Campaign, RunConfig
from pipe_rules.inputs.spec_parts import check_species
from pipe_rules.inputs.tasks_file import iter_tasks_file
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.runrecord import RunRecord, read_run, run_exists


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


def check_campaign(campaign: Campaign, fresh: Collection[str] = ()) -> None:
    """The whole campaign as staging will see it, before anything is staged or submitted: every
    run's engine, family and level; its tasks file's specs; every species' structure (RDKit) and
    geometries; and no run already staged with another family/engine/level/resources. Raises the
    same one-line errors staging would.

    `fresh`: runs staged from exactly this config (pipe-rules run asks workflow_support): staging
    will not read their inputs again, so neither does this check (a tasks file of 1,000,000 specs,
    20,000 SMILES through RDKit: tens of seconds before a resumed campaign could start). Species
    are checked unless every run is fresh; each distinct structure is parsed once."""
    for run in campaign.runs:
        check_engine(campaign, run)
        if run.tasks_file and run.name not in fresh:
            for _ in iter_tasks_file(run):  # every spec checked, none kept: a tasks file can hold 1,000,000
                pass
        layout = RunLayout(campaign.run_dir(run.name))
        if run_exists(layout):
            check_key(read_run(layout), run, layout)
    if all(run.name in fresh for run in campaign.runs):
        return
    parsed: set = set()
    for species in campaign.species:
        check_species(species, parsed)


def check_key(record: RunRecord, run: RunConfig, layout: RunLayout) -> None:
    if record.key != run.homogeneity_key:
        diff = {k: (record.key.get(k), v) for k, v in run.homogeneity_key.items() if record.key.get(k) != v}
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise StagingError(f"run was staged with a different family/engine/level/resources ({changes}); "
                           "one run holds one kind of task: give the run a new name", path=layout.run_json)
