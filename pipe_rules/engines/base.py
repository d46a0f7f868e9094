"""What every engine provides, and how it reports failure.

The worker decides retry policy from the failure class alone, so engines must classify honestly:
ESS means the same input would fail again, TRANSIENT means the environment let us down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol


class FailureClass(str, Enum):
    ESS = "ess"  # deterministic engine error: the same input fails again (never retried blindly)
    TRANSIENT = "transient"  # the environment failed: retry with the same input


class InvalidRequest(ValueError):
    """The task asks for what the engine cannot do: an unknown family, level or option, a malformed
    payload. No retry can fix it (the task ends FAILED_TERMINAL at once); any other exception from an
    engine is a bug or an environment failure and keeps its traceback in the attempt folder."""


class EngineFailure(Exception):
    """A classified failure. `reason` is a short keyword for tables and retry rules
    ("scf_not_converged", "max_opt_cycles", ...); `message` is the text a person reads.
    `last_geometry` (ARC xyz dict) and `last_energy_hartree`: where an optimisation stopped, so
    the host can restart or troubleshoot from there (result.json and failed.jsonl carry them)."""

    def __init__(self, failure_class: FailureClass, reason: str, message: str,
                 last_geometry: dict | None = None, last_energy_hartree: float | None = None):
        self.failure_class = FailureClass(failure_class)
        self.reason = reason
        self.message = message
        self.last_geometry = last_geometry
        self.last_energy_hartree = last_energy_hartree
        super().__init__(f"{self.failure_class.value} failure ({reason}): {message}")


@dataclass
class EngineResult:
    energy_hartree: float | None
    geometry: dict | None  # ARC xyz dict in Angstrom, plain lists (JSON-ready)
    converged: bool
    data: dict = field(default_factory=dict)  # family-specific extras, JSON-serialisable only
    native_outputs: list[str] = field(default_factory=list)  # files the engine wrote, relative to workdir


class Engine(Protocol):
    """Engines run in the worker's process with `workdir` as cwd. Invalid requests (unknown family
    or level, malformed payload) raise InvalidRequest: no retry can fix them."""

    name: str
    families: frozenset[str]
    levels: frozenset[str] | None  # None: any level accepted
    # optional `writes_files = False`: the engine writes nothing, so the worker skips making workdir its cwd

    def version(self) -> str: ...

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult: ...


def check_request(engine: Engine, family: str, level: str) -> str:
    """Reject what the engine cannot run before it starts; return the level as the engine spells it
    (levels match case-insensitively, as task fingerprints lower-case them)."""
    if family not in engine.families:
        raise InvalidRequest(f"engine {engine.name!r} cannot run family {family!r}; "
                         f"it runs: {', '.join(sorted(engine.families))}")
    if engine.levels is None:
        return level
    by_lower = {known.lower(): known for known in engine.levels}
    if level.lower() not in by_lower:
        raise InvalidRequest(f"engine {engine.name!r} has no level {level!r}; "
                         f"choose one of: {', '.join(sorted(engine.levels))}")
    return by_lower[level.lower()]
