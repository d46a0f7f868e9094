"""Small file primitives that stay correct on shared filesystems.

Readers never take locks, so every file another process may read is written to a unique temp
name in the same folder and renamed over the target: a reader sees the old or the new file, never
half of one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import orjson

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.hostid import pid_alive
from pipe_rules.store.noreplace import exclusive_rename

_HOST = socket.gethostname()


def temp_name(path: Path) -> Path:
    """The temp file a writer of `path` fills before renaming it over `path`: unique per host and process."""
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_file(path: Path, data: bytes, fsync: bool = False) -> None:
    """Create `path` and write `data`: os-level calls, so one openat and no fstat or ioctl of Python's
    buffered files (on a shared filesystem every metadata call is a round trip)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        _write_fd(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def open_or_create(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open(path, flags | O_CREAT) for a file several clients open and none removes (a lock file,
    the manifest). POSIX says that never fails because the name exists; through FUSE (GlusterFS) it
    can: when another client creates the name between this client's lookup and its create, the
    create comes back EEXIST (seen in the two-mount claim test). The file exists then, so it is
    opened as it is."""
    for _ in range(_OPEN_TRIES):
        try:
            return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)
        except FileExistsError:
            pass
        try:
            return os.open(path, (flags & ~os.O_CREAT) | os.O_CLOEXEC)
        except FileNotFoundError:  # removed meanwhile after all: create it afresh
            continue
    raise OSError(errno.EEXIST, f"could not open {path}: its name kept appearing and disappearing "
                                f"({_OPEN_TRIES} tries)", str(path))


_OPEN_TRIES = 5


def read_bytes(path: Path) -> bytes:
    """The whole file, with one openat and no fstat (see _write_file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, fsync: bool = False) -> None:
    """Write `text` to `path` by temp file + rename; the temp name is unique per host and process."""
    _atomic_write_bytes(path, text.encode("utf-8"), fsync)


def _atomic_write_bytes(path: Path, data: bytes, fsync: bool) -> None:
    tmp = temp_name(path)
    try:
        _write_file(tmp, data, fsync=fsync)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def compact_json(data: Any) -> bytes:
    """orjson: ~10 us for a state or result where the json module took 50-115 us (measured on the
    development VM), and a worker writes three such files per task. NaN and infinity become null."""
    return orjson.dumps(data, option=_ORJSON)


def atomic_write_json(path: Path, data: Any, fsync: bool = False, pretty: bool = False) -> None:
    """Compact by default (the hot path); files people read are written pretty (json, sorted keys)."""
    if pretty:
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n", fsync=fsync)
        return
    _atomic_write_bytes(path, compact_json(data), fsync)


def vanished(exc: OSError) -> bool:
    """The name is gone: ENOENT, or ESTALE when another client removed the file behind this client's
    cached name (seen on GlusterFS in the storms; NFS does the same)."""
    return isinstance(exc, FileNotFoundError) or exc.errno == errno.ESTALE


def taken_by_other(exc: OSError, path: Path) -> bool:
    """An exclusive create (O_EXCL, link) refused because the name exists. sshfs reports a race lost
    at the server (the kernel thought the name free) as EPERM, not EEXIST (seen in the storms)."""
    return isinstance(exc, FileExistsError) or (exc.errno == errno.EPERM and os.path.lexists(path))


def create_new(path: Path, data: bytes) -> bool:
    """Create `path` with `data` only if the name is free; True if this call created it.

    The content goes to a temp file first and then takes the name exclusively: readers never see a
    half file, and of concurrent creators exactly one wins (the others leave the winner's file
    alone). The exclusive step is `renameat2(RENAME_NOREPLACE)` on a local filesystem that honours
    it (one call instead of link + unlink), else a hard link (atomic also over NFS and FUSE)."""
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.new")
    _write_file(tmp, data)
    try:
        if exclusive_rename(tmp, path):
            return True
        os.link(tmp, path)
        linked = True
    except OSError as exc:
        if not taken_by_other(exc, path):
            _unlink_quietly(tmp)
            raise
        linked = False
    _unlink_quietly(tmp)
    return linked


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_new_json(path: Path, data: Any) -> bool:
    """Create a JSON file only if it does not exist yet (see create_new); True if this call created it."""
    return create_new(path, compact_json(data))


def read_json(path: Path, what: str, repair_hint: str = "", own: bool = False) -> Any:
    """Read a JSON file, turning a missing, truncated or corrupt file into one clear StateError.

    `repair_hint` is appended to corruption errors: only say that something repairs a file if it does.
    `own`: a file pipe_rules wrote (see parse_json)."""
    try:
        text = read_bytes(path)  # bytes: parse_json decodes, and words a file that is not UTF-8
    except FileNotFoundError:
        raise StateError(f"{what} is missing", path=path) from None
    except OSError as exc:
        raise StateError(f"cannot read {what}: {exc.strerror}", path=path) from None
    return parse_json(text, path, what, repair_hint, own)


def parse_json(text: str | bytes, path: Path, what: str, repair_hint: str = "", own: bool = False) -> Any:
    """`own`: a file pipe_rules wrote with compact_json (spec, result), parsed by orjson first: a worker
    parses a spec per task and ingestion every result, and orjson is several times faster. It reads
    back exactly what orjson wrote; other files go to the json module only, since orjson would turn an
    integer beyond 64 bits into a float. What orjson refuses (NaN, broken files) goes to the json
    module too, which accepts what it always did and words the error."""
    if own:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StateError(f"{what} is corrupt (not UTF-8 text at byte {exc.start}){repair_hint}", path=path) from None
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
    except OSError as exc:
        if taken_by_other(exc, path):
            return False
        raise
    os.close(fd)
    return True


def move_if_present(src: Path, dst: Path) -> bool:
    """Rename a queue token; False if `src` is gone (another process moved it first). A missing
    destination folder (removed by hand) is made again."""
    try:
        os.rename(src, dst)
        return True
    except OSError as exc:
        if not vanished(exc):
            raise
        if exc.errno == errno.ESTALE or dst.parent.is_dir():
            return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
        return True
    except FileNotFoundError:
        return False


def remove_if_present(path: Path) -> bool:
    """Unlink `path`; return True if this call removed it (the atomic 'take' of a queue token)."""
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if vanished(exc):
            return False
        raise


# Temp files of the writers above: `.<target>.<host>.<pid>.tmp` (atomic_write_text) and
# `.<target>.<host>.<pid>.new` (write_new_json). A writer killed between open and rename leaves one.
# Only JSON, JSON Lines and TSV targets are recognised (all a run folder holds), so an engine's own temp files in an
# attempt folder never match.
_TEMP_NAME = re.compile(r"^\.(?P<target>[^/]+?\.(?:json|jsonl|tsv))\.(?P<host>[^/]+)\.(?P<pid>\d+)\.(?:tmp|new)$")
DEAD_WRITER_GRACE_S = 10.0  # a temp file lives for milliseconds; give a dead writer's file this long anyway
STALE_TEMP_AGE_S = 3600.0  # a temp file of another host (or a pid we cannot judge) is stale only this old


def stale_temp_reason(path: Path, now: float) -> str | None:
    """Why the temp file at `path` is safe to delete, or None if it is not one of ours or may be live.

    Stale means: written on this host by a process that no longer exists (and at least
    DEAD_WRITER_GRACE_S old), or older than STALE_TEMP_AGE_S whoever wrote it. A live writer's
    file is never stale: its pid exists, and its file is far younger than an hour."""
    match = _TEMP_NAME.match(path.name)
    if not match:
        return None
    try:
        age = now - path.lstat().st_mtime
    except FileNotFoundError:
        return None
    pid = int(match["pid"])
    mine = match["host"] == _HOST and pid != os.getpid()
    if mine and age >= DEAD_WRITER_GRACE_S and not pid_alive(pid):
        return f"writer pid {pid} on this host is gone"
    if age >= STALE_TEMP_AGE_S:
        return f"{age / 3600:.1f} h old"
    return None
