"""Exceptions that carry the file and field at fault, so the CLI can print one useful line."""

from __future__ import annotations

from pathlib import Path


class PipeRulesError(Exception):
    """Base class: every error the CLI turns into a one-line message and a non-zero exit."""

    def __init__(self, message: str, path: Path | str | None = None, field: str | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if self.field:
                where += f": field '{self.field}'"
            where += ": "
        elif self.field:
            where = f"field '{self.field}': "
        return f"{where}{self.message}"


def os_error_line(exc: OSError) -> str:
    """'missing.md: No such file or directory', from an OSError that may or may not name its file."""
    text = exc.strerror or str(exc) or type(exc).__name__
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{' -> '.join(names)}: {text}" if names else text


class ConfigError(PipeRulesError):
    """The campaign config (config.yaml or a species file) is malformed."""


class SpecError(PipeRulesError):
    """A task spec is malformed, or unsafe (e.g. a task id that escapes the run folder)."""


class StateError(PipeRulesError):
    """A state file is corrupt, or a transition is not allowed."""


class InvalidTransition(StateError):
    """The state machine refused a transition; nothing was written."""


class OwnershipLost(StateError):
    """The claim token no longer matches: another worker (or the reconciler) took the task."""


class StagingError(PipeRulesError):
    """Staging refused to touch a run (mismatched homogeneity key, bad input...)."""
