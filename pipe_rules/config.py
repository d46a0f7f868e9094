"""Read and validate a campaign config (config.yaml) into typed settings.

Errors name the file and the field (e.g. `config.yaml: field 'runs.0.family': ...`), and the
config is fully checked before anything is staged, so a bad config never half-writes a run.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .ids import check_safe_id
from .schemas import first_error
from .spec import HOMOGENEITY_FIELDS

RUN_DEFAULTS: dict[str, Any] = {
    "engine": "tblite",
    "level": "GFN2-xTB",
    "cores": 1,
    "memory_mb": 2000,
    "walltime_min": 60,
    "shards": 2,
    "max_attempts": 3,
    "lease_s": 300.0,
    "heartbeat_s": 30.0,
    "clock_skew_s": 30.0,
    "linger_s": None,  # None: twice the lease
    "n_conformers": 4,
    "seed": 42,
    "options": {},
    "partition": "",
    "account": "",
    "scan_resolution_deg": 10.0,  # rotor_scan_1d: goes into each payload at staging
    "ts_methods": ("idpp",),  # ts_guess_batch_method: one task per reaction and method
    "n_images": 9,
}
IRC_DIRECTIONS = ("forward", "reverse")


@dataclass(frozen=True)
class Species:
    label: str
    smiles: str | None = None
    xyz: Any = None
    charge: int | None = None
    multiplicity: int | None = None
    # 0-based [i, j, k, l] into the species' geometry (xyz, or RDKit's order for a SMILES: heavy
    # atoms first, then explicit H); position in the tuple = rotor_index
    torsions: tuple[tuple[int, int, int, int], ...] = ()
    ts_guesses: tuple[Any, ...] = ()  # xyz blocks or dicts: non-empty makes a TS species (owner_type species)
    irc_directions: tuple[str, ...] = IRC_DIRECTIONS

    @property
    def is_ts(self) -> bool:
        return bool(self.ts_guesses)

    @classmethod
    def from_dict(cls, data: dict) -> Species:
        """Lists from YAML become tuples: a Species is frozen and its fields are never mutated."""
        data = dict(data)
        data["torsions"] = tuple(tuple(t) for t in data.get("torsions", ()))
        data["ts_guesses"] = tuple(data.get("ts_guesses", ()))
        data["irc_directions"] = tuple(data.get("irc_directions", IRC_DIRECTIONS))
        return cls(**data)


@dataclass(frozen=True)
class Reaction:
    """Reactant and product geometries, atom-mapped (atom i is atom i), for ts_guess_batch_method."""
    label: str
    reactant_xyz: Any
    product_xyz: Any
    charge: int = 0
    multiplicity: int = 1


@dataclass(frozen=True)
class RunConfig:
    name: str
    family: str
    engine: str
    level: str
    cores: int
    memory_mb: int
    walltime_min: int
    shards: int
    max_attempts: int
    lease_s: float
    heartbeat_s: float
    clock_skew_s: float
    linger_s: float
    n_conformers: int
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    partition: str = ""
    account: str = ""
    from_run: str | None = None
    species: tuple[str, ...] | None = None
    scan_resolution_deg: float = 10.0
    ts_methods: tuple[str, ...] = ("idpp",)
    n_images: int = 9
    tasks_file: str | None = None  # ready TaskSpecs (JSON list), e.g. written by pipe_rules.api; absolute

    @property
    def homogeneity_key(self) -> dict[str, Any]:
        """What must be the same for every task of a run (ARC's batching key)."""
        return {name: getattr(self, name) for name in HOMOGENEITY_FIELDS}


@dataclass(frozen=True)
class Campaign:
    name: str
    run_root: Path
    lock_mode: str
    species: tuple[Species, ...]
    runs: tuple[RunConfig, ...]
    source: Path | None = None
    reactions: tuple[Reaction, ...] = ()

    def run(self, name: str) -> RunConfig:
        for run in self.runs:
            if run.name == name:
                return run
        raise ConfigError(f"no run named {name!r} (runs: {', '.join(r.name for r in self.runs)})",
                          path=self.source, field="runs")

    def run_dir(self, name: str) -> Path:
        return self.run_root / self.name / name


def _load_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} is not UTF-8 text (bad byte at offset {exc.start})", path=path) from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise ConfigError(f"cannot read {what}: {getattr(exc, 'strerror', None) or exc}", path=path) from None
    try:
        # The C loader (libyaml) when available: 10x faster on 100,000-species files, and as safe.
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"is not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=path) from None


def load_campaign(path: Path | str) -> Campaign:
    path = Path(path)
    data = _load_yaml(path, "the campaign config")
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
    species = [dict(s) for s in data.get("species", [])]
    if "species_file" in data:
        species_path = base / data["species_file"]
        listed = _load_yaml(species_path, "the species file")
        if isinstance(listed, dict) and "species" in listed:
            listed = listed["species"]
        problem = first_error("config", {"campaign": "x", "runs": [{"name": "x", "family": "conf_opt"}],
                                         "species": listed})
        if problem:
            raise ConfigError(problem[1], path=species_path, field=problem[0].replace("species.", "", 1))
        species += listed
    if "arc_input" in data:  # the species section of an existing ARC input file
        from .arc_input import arc_species_dicts
        species += arc_species_dicts(base / data["arc_input"])
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
        species=tuple(Species.from_dict(s) for s in species),
        runs=tuple(runs),
        source=path,
        reactions=tuple(Reaction(**r) for r in data.get("reactions", [])),
    )
    from .family_inputs import check_family_inputs  # needs the whole campaign (and imports config)
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
