"""Identifiers that become folder names: a safe charset, so nothing escapes the run folder."""

from __future__ import annotations

import re

from pipe_rules.contracts.errors import SpecError

# Letters, digits, '_', '-', '.', '+', but never leading '.' or '-': no '/', no '..', no hidden files.
_SAFE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,127}")  # used with fullmatch: '$' would allow "id\n"
SAFE_ID_PATTERN = f"^{_SAFE.pattern}$"


def check_safe_id(value: object, what: str, path=None) -> str:
    """Return `value` if it is safe as a single path component, else raise SpecError naming it."""
    if not isinstance(value, str) or not _SAFE.fullmatch(value) or ".." in value:
        raise SpecError(
            f"{what} {value!r} is not allowed: use 1-128 characters from A-Z a-z 0-9 _ . + - "
            "(not starting with '.' or '-', no '/' and no '..')",
            path=path,
            field=what,
        )
    return value


def sanitize_label(label: str) -> str:
    """Turn a species label into a safe id fragment (ARC labels may hold '(' or spaces)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]", "_", label).strip("._-") or "species"
    return cleaned[:96]
