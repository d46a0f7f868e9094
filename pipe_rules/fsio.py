"""Small file primitives that stay correct on shared filesystems.

Readers never take locks, so every file another process may read is written to a unique temp
name in the same folder and renamed over the target: a reader sees the old or the new file, never
half of one.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from .errors import StateError

_HOST = socket.gethostname()


def atomic_write_text(path: Path, text: str, fsync: bool = False) -> None:
    """Write `text` to `path` by temp file + rename; the temp name is unique per host and process."""
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: Path, data: Any, fsync: bool = False, pretty: bool = False) -> None:
    """Compact by default: `indent` makes json fall back to its slow pure-Python encoder, and
    state files are rewritten several times per task. Files people read are written pretty."""
    text = json.dumps(data, indent=1, sort_keys=True) if pretty else json.dumps(data, separators=(",", ":"))
    atomic_write_text(path, text + "\n", fsync=fsync)


def write_new_json(path: Path, data: Any) -> bool:
    """Create `path` only if it does not exist yet (link is atomic, also over NFS). Return True if created."""
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.new")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, separators=(",", ":")) + "\n")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def read_json(path: Path, what: str, repair_hint: str = "") -> Any:
    """Read a JSON file, turning a missing, truncated or corrupt file into one clear StateError.

    `repair_hint` is appended to corruption errors: only say that something repairs a file if it does."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StateError(f"{what} is missing", path=path) from None
    except UnicodeDecodeError as exc:
        raise StateError(f"{what} is corrupt (not UTF-8 text at byte {exc.start}){repair_hint}", path=path) from None
    except OSError as exc:
        raise StateError(f"cannot read {what}: {exc.strerror}", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{what} is corrupt or truncated (invalid JSON at line {exc.lineno} column {exc.colno}){repair_hint}",
            path=path,
        ) from None


def touch_new(path: Path) -> bool:
    """Create an empty marker file; return False if it already existed."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def remove_if_present(path: Path) -> bool:
    """Unlink `path`; return True if this call removed it (the atomic 'take' of a queue token)."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
