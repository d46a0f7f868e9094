"""YAML files of the user (campaign configs, species files, ARC inputs), read safely with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipe_rules.contracts.errors import ConfigError


def load_yaml(path: Path, what: str) -> Any:
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
