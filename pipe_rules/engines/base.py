"""What every engine provides, and how it reports failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol


class FailureClass(str, Enum):
    ESS = "ess"  # deterministic engine error: the same input fails again (never retried blindly)
    TRANSIENT = "transient"  # the environment failed: retry with the same input


class EngineFailure(Exception):
    def __init__(self, failure_class: FailureClass, reason: str, message: str):
        self.failure_class = failure_class
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


@dataclass
class EngineResult:
    energy_hartree: float | None
    geometry: dict | None
    converged: bool
    data: dict = field(default_factory=dict)
    native_outputs: list[str] = field(default_factory=list)


class Engine(Protocol):
    name: str
    families: frozenset[str]
    levels: frozenset[str] | None

    def version(self) -> str: ...

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult: ...
