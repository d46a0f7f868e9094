"""The campaign as typed settings: species, reactions and runs (what `config.parse_campaign` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.contracts.spec import HOMOGENEITY_FIELDS

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
    "max_running_shards": 0,  # 0: no throttle (transport only, not part of the run's key)
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
    inchi: str | None = None
    adjlist: str | None = None
    conformers: tuple[Any, ...] = ()  # given conformers: conf_opt/conf_sp use them instead of embedding
    # 0-based [i, j, k, l] into the species' geometry (xyz, or RDKit's order for a SMILES: heavy
    # atoms first, then explicit H); position in the tuple = rotor_index
    torsions: tuple[tuple[int, int, int, int], ...] = ()
    # xyz blocks or dicts: a non-None one makes a TS species (owner_type species); position = ts_guess_index
    ts_guesses: tuple[Any, ...] = ()
    irc_directions: tuple[str, ...] = IRC_DIRECTIONS
    # (file, field) the entry came from, for errors found after parsing (e.g. RDKit refusing a SMILES)
    origin: tuple[str, str] | None = field(default=None, compare=False)

    @property
    def is_ts(self) -> bool:
        return any(guess is not None for guess in self.ts_guesses)

    @property
    def structure(self) -> tuple[str, str] | None:
        """(key, value) of the species' structure: smiles, inchi or adjlist; None if it has none."""
        for key in ("adjlist", "inchi", "smiles"):
            if getattr(self, key):
                return key, getattr(self, key)
        return None

    def where(self, key: str) -> tuple[Path | None, str]:
        """The file and field of one of this species' keys, for a one-line error."""
        if self.origin is None:
            return None, f"species.{self.label}.{key}"
        return Path(self.origin[0]), f"{self.origin[1]}.{key}" if self.origin[1] else key

    @classmethod
    def from_dict(cls, data: dict, origin: tuple[str, str] | None = None) -> Species:
        """Lists from YAML become tuples: a Species is frozen and its fields are never mutated."""
        data = dict(data)
        data["torsions"] = tuple(tuple(t) for t in data.get("torsions", ()))
        data["ts_guesses"] = tuple(data.get("ts_guesses", ()))
        data["conformers"] = tuple(data.get("conformers", ()))
        data["irc_directions"] = tuple(data.get("irc_directions", IRC_DIRECTIONS))
        return cls(**data, origin=origin)


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
    max_running_shards: int = 0
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
