"""Read and validate a campaign config (config.yaml) into typed settings.

Errors name the file and the field (e.g. `config.yaml: field 'runs.0.family': ...`), and the
config is fully checked before anything is staged, so a bad config never half-writes a run.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.ids import check_safe_id
from pipe_rules.contracts.validation import first_error
from pipe_rules.inputs.arc_input import arc_species_dicts
from pipe_rules.inputs.campaign import RUN_DEFAULTS, Campaign, Reaction, RunConfig, Species
from pipe_rules.inputs.family_inputs import check_family_inputs
from pipe_rules.inputs.geometry_files import resolve_entry_files
from pipe_rules.inputs.yaml_loading import load_yaml


def load_campaign(path: Path | str) -> Campaign:
    path = Path(path)
    data = load_yaml(path, "the campaign config")
    return parse_campaign(data, path)


def parse_campaign(data: Any, path: Path | None = None, base_dir: Path | None = None) -> Campaign:
    """Validate a config mapping (as read from YAML, or Snakemake's `config`) into a Campaign."""
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping with at least 'campaign' and 'runs'", path=path)
    problem = first_error("config", data)
    if problem:
        raise ConfigError(problem[1], path=path, field=problem[0])
    _reject_non_finite(data, path)
    check_safe_id(data["campaign"], "campaign", path)  # the schema's '$' lets a trailing newline through
    base = base_dir or (path.parent if path else Path.cwd())
    species = [resolve_entry_files(s, base, path, f"species.{i}") for i, s in enumerate(data.get("species", []))]
    origins = [(str(path), f"species.{i}") for i in range(len(species))]
    if "species_file" in data:
        species_path = base / data["species_file"]
        listed = load_yaml(species_path, "the species file")
        if isinstance(listed, dict) and "species" in listed:
            listed = listed["species"]
        problem = first_error("config", {"campaign": "x", "runs": [{"name": "x", "family": "conf_opt"}],
                                         "species": listed})
        if problem:
            raise ConfigError(problem[1], path=species_path, field=problem[0].replace("species.", "", 1))
        species += [resolve_entry_files(s, species_path.parent, species_path, str(i)) for i, s in enumerate(listed)]
        origins += [(str(species_path), str(i)) for i in range(len(listed))]
    if "arc_input" in data:  # the species (and reactions' TS guesses) of an ARC input or restart file
        arc_path = base / data["arc_input"]
        arc = arc_species_dicts(arc_path)
        species += arc
        origins += [(str(arc_path), f"species.{i}") for i in range(len(arc))]
    labels = [s["label"] for s in species]
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise ConfigError(f"species label(s) used twice: {', '.join(duplicates)}", path=path, field="species")
    reaction_labels = [r["label"] for r in data.get("reactions", [])]
    duplicates = sorted(label for label, count in Counter(reaction_labels).items() if count > 1)
    if duplicates:
        raise ConfigError(f"reaction label(s) used twice: {', '.join(duplicates)}", path=path, field="reactions")
    runs = _parse_runs(data, path, set(labels), bool(reaction_labels), base)
    run_root = Path(data.get("run_root", "runs"))
    campaign = Campaign(
        name=data["campaign"],
        run_root=run_root,
        lock_mode=data.get("lock_mode", "flock"),
        species=tuple(Species.from_dict(s, origin) for s, origin in zip(species, origins)),
        runs=tuple(runs),
        source=path,
        reactions=tuple(Reaction(**r) for r in data.get("reactions", [])),
    )
    check_family_inputs(campaign)
    return campaign


def _reject_non_finite(value: Any, path: Path | None, where: str = "") -> None:
    """YAML's .nan and .inf pass a schema's number checks and every comparison with NaN is false
    (a NaN lease would strand every task): refuse them by name."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{value} is not a finite number", path=path, field=where or "(top level)")
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_non_finite(item, path, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_non_finite(item, path, f"{where}.{index}")


def _parse_runs(data: dict, path: Path | None, labels: set[str], has_reactions: bool = False,
                base: Path | None = None) -> list[RunConfig]:
    defaults = {**RUN_DEFAULTS, **data.get("defaults", {})}
    runs: list[RunConfig] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["runs"]):
        where = f"runs.{index}"
        settings = {**defaults, **raw}
        name = check_safe_id(settings["name"], f"{where}.name", path)
        if name in seen:
            raise ConfigError(f"run name {name!r} is used twice", path=path, field=f"{where}.name")
        if settings.get("from_run") and settings["from_run"] not in seen:
            raise ConfigError(f"from_run {settings['from_run']!r} must name an earlier run",
                              path=path, field=f"{where}.from_run")
        if settings.get("tasks_file"):
            if settings.get("from_run"):
                raise ConfigError("give tasks_file or from_run, not both", path=path, field=f"{where}.tasks_file")
            settings["tasks_file"] = str((base or Path.cwd()) / settings["tasks_file"])
        elif not settings.get("from_run") and not labels and not has_reactions:
            raise ConfigError("has no input: give 'species' (or 'species_file', 'arc_input'), 'reactions', "
                              "'from_run' or 'tasks_file'", path=path, field=where)
        unknown = sorted(set(settings.get("species") or ()) - labels)
        if unknown:
            raise ConfigError(f"unknown species label(s): {', '.join(unknown)}", path=path, field=f"{where}.species")
        if settings["heartbeat_s"] >= settings["lease_s"]:
            raise ConfigError(f"heartbeat_s ({settings['heartbeat_s']}) must be below lease_s ({settings['lease_s']})",
                              path=path, field=f"{where}.heartbeat_s")
        check_safe_id(settings["engine"], f"{where}.engine", path)
        if settings["linger_s"] is None:
            settings["linger_s"] = 2 * settings["lease_s"]
        if settings.get("species") is not None:
            settings["species"] = tuple(settings["species"])
        settings["ts_methods"] = tuple(settings["ts_methods"])
        settings["scan_resolution_deg"] = float(settings["scan_resolution_deg"])
        seen.add(name)
        runs.append(RunConfig(**settings))
    return runs
