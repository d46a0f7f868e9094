"""Read and validate a campaign config (config.yaml) into typed settings.

Errors name the file and the field (e.g. `config.yaml: field 'runs.0.family': ...`), and the
config is fully checked before anything is staged, so a bad config never half-writes a run. The
shape and the defaults are the models' (inputs/campaign.py, inputs/run_settings.py); what a model
cannot say (run names unique, from_run earlier, heartbeat below the lease...) is checked here.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.ids import check_safe_id
from pipe_rules.contracts.models import parse
from pipe_rules.inputs.arc_input import arc_species_dicts
from pipe_rules.inputs.campaign import Campaign, CampaignFile, Reaction, Species
from pipe_rules.inputs.family_inputs import check_family_inputs
from pipe_rules.inputs.geometry_files import resolve_entry_files
from pipe_rules.inputs.run_settings import RUN_SETTINGS, RunConfig
from pipe_rules.inputs.yaml_loading import load_yaml


def load_campaign(path: Path | str) -> Campaign:
    path = Path(path)
    data = load_yaml(path, "the campaign config")
    return parse_campaign(data, path)


def parse_campaign(data: Any, path: Path | None = None, base_dir: Path | None = None) -> Campaign:
    """Validate a config mapping (as read from YAML, or Snakemake's `config`) into a Campaign."""
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping with at least 'campaign' and 'runs'", path=path)
    config = parse(CampaignFile, data, ConfigError, path)
    _reject_non_finite(data, path)
    check_safe_id(config.campaign, "campaign", path)  # the pattern's '$' lets a trailing newline through
    base = base_dir or (path.parent if path else Path.cwd())
    entries = [(resolve_entry_files(s, base, path, f"species.{i}"), (str(path), f"species.{i}"))
               for i, s in enumerate(data.get("species") or [])]
    if config.species_file is not None:
        species_path = base / config.species_file
        listed = load_yaml(species_path, "the species file")
        if isinstance(listed, dict) and "species" in listed:
            listed = listed["species"]
        if not isinstance(listed, list):
            raise ConfigError("must be a list of species", path=species_path)
        _reject_non_finite(listed, species_path)
        for i, entry in enumerate(listed):  # checked as given, before its files are read
            parse(Species, entry, ConfigError, species_path, str(i))
        entries += [(resolve_entry_files(s, species_path.parent, species_path, str(i)), (str(species_path), str(i)))
                    for i, s in enumerate(listed)]
    if config.arc_input is not None:  # the species (and reactions' TS guesses) of an ARC input or restart file
        arc_path = base / config.arc_input
        entries += [(s, (str(arc_path), f"species.{i}")) for i, s in enumerate(arc_species_dicts(arc_path))]
    species = tuple(Species.from_dict(entry, origin) for entry, origin in entries)
    labels = [s.label for s in species]
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise ConfigError(f"species label(s) used twice: {', '.join(duplicates)}", path=path, field="species")
    reactions: tuple[Reaction, ...] = tuple(config.reactions or ())
    duplicates = sorted(label for label, count in Counter(r.label for r in reactions).items() if count > 1)
    if duplicates:
        raise ConfigError(f"reaction label(s) used twice: {', '.join(duplicates)}", path=path, field="reactions")
    campaign = Campaign(
        name=config.campaign,
        run_root=Path(config.run_root),
        lock_mode=config.lock_mode,
        lock_lease_s=config.lock_lease_s,
        species=species,
        runs=tuple(_resolve_runs(data, path, set(labels), bool(reactions), base)),
        source=path,
        reactions=reactions,
    )
    check_family_inputs(campaign)
    return campaign



def _reject_non_finite(value: Any, path: Path | None, where: str = "", seen: set[int] | None = None) -> None:
    """YAML's .nan and .inf would pass unnoticed where any value is allowed (options, geometries),
    and every comparison with NaN is false (a NaN lease would strand every task): refuse them by
    name. YAML anchors can make a list contain itself: each container is walked once."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{value} is not a finite number", path=path, field=where or "(top level)")
    if not isinstance(value, (dict, list)):
        return
    seen = set() if seen is None else seen
    if id(value) in seen:
        raise ConfigError("refers to itself (a YAML anchor inside its own value)", path=path,
                          field=where or "(top level)")
    seen.add(id(value))
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        _reject_non_finite(item, path, f"{where}.{key}" if where else str(key), seen)
    seen.discard(id(value))


def _resolve_runs(data: dict, path: Path | None, labels: set[str], has_reactions: bool,
                  base: Path) -> list[RunConfig]:
    """Each run's settings: the run's own, else `defaults`, else the model's default."""
    defaults = {k: v for k, v in (data.get("defaults") or {}).items() if k in RUN_SETTINGS}
    runs: list[RunConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["runs"]):  # valid: CampaignFile checked each
        where = f"runs.{index}"
        run = RunConfig.model_validate({**defaults, **raw})
        name = check_safe_id(run.name, f"{where}.name", path)
        if name in seen:
            raise ConfigError(f"run name {name!r} is used twice", path=path, field=f"{where}.name")
        if run.from_run and run.from_run not in seen:
            raise ConfigError(f"from_run {run.from_run!r} must name an earlier run", path=path,
                              field=f"{where}.from_run")
        updates: dict[str, Any] = {}
        if run.tasks_file:
            if run.from_run:
                raise ConfigError("give tasks_file or from_run, not both", path=path, field=f"{where}.tasks_file")
            if raw.get("options"):  # a ready spec carries its own options; these would reach no task
                raise ConfigError("a tasks_file run takes each task's options from its spec (they are part of its "
                                  "fingerprint); move these options into the specs or remove them",
                                  path=path, field=f"{where}.options")
            updates["tasks_file"] = str(base / run.tasks_file)
        elif not run.from_run and not labels and not has_reactions:
            raise ConfigError("has no input: give 'species' (or 'species_file', 'arc_input'), 'reactions', "
                              "'from_run' or 'tasks_file'", path=path, field=where)
        unknown = sorted(set(run.species or ()) - labels)
        if unknown:
            raise ConfigError(f"unknown species label(s): {', '.join(unknown)}", path=path, field=f"{where}.species")
        if run.heartbeat_s >= run.lease_s:
            raise ConfigError(f"heartbeat_s ({run.heartbeat_s}) must be below lease_s ({run.lease_s})",
                              path=path, field=f"{where}.heartbeat_s")
        check_safe_id(run.engine, f"{where}.engine", path)
        if run.linger_s is None:
            updates["linger_s"] = 2 * run.lease_s
        seen.add(name)
        runs.append(run.model_copy(update=updates) if updates else run)
    return runs
