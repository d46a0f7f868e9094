"""Per-file locks from filelock, chosen for the filesystem the run lives on.

- "flock": fcntl.flock (filelock.FileLock); correct on local disks and on one node. Falls back to
  a soft lock where the filesystem refuses flock (Lustre mounted with `noflock`).
- "soft": filelock.SoftFileLock, an O_EXCL marker file. Use it when workers on several NFS
  clients share a run: native flock does not exclude across NFS client caches. A holder killed
  with SIGKILL leaves its marker; peers break it after `stale_after` seconds (our critical
  sections last milliseconds, so 60 s is generous).
"""

from __future__ import annotations

from pathlib import Path

from filelock import BaseFileLock, FileLock, SoftFileLock, Timeout

from .errors import StateError

LOCK_MODES = ("flock", "soft")
LOCK_TIMEOUT_S = 60.0
SOFT_STALE_AFTER_S = 60.0


def make_lock(path: Path, mode: str) -> BaseFileLock:
    if mode == "flock":
        return FileLock(path, timeout=LOCK_TIMEOUT_S, fallback_to_soft=True, is_singleton=False)
    if mode == "soft":
        return SoftFileLock(path, timeout=LOCK_TIMEOUT_S, lifetime=SOFT_STALE_AFTER_S, is_singleton=False)
    raise StateError(f"unknown lock mode {mode!r}; use one of {', '.join(LOCK_MODES)}", field="lock_mode")


class locked:
    """Context manager: hold the lock at `path`, turning a timeout into a StateError that names it."""

    def __init__(self, path: Path, mode: str):
        self._path = path
        self._lock = make_lock(path, mode)

    def __enter__(self) -> None:
        try:
            self._lock.acquire()
        except Timeout:
            raise StateError(
                f"could not take the lock within {LOCK_TIMEOUT_S:.0f} s; is a process stuck holding it?",
                path=self._path,
            ) from None

    def __exit__(self, *exc) -> None:
        self._lock.release()
