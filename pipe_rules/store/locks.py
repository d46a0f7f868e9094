"""Per-file locks, chosen for the filesystem the run lives on.

- "flock": fcntl.flock on the lock file, opened per acquisition (so two threads of one process
  exclude each other too); correct on local disks and on one node. Falls back to a soft lock where
  the filesystem refuses flock (Lustre mounted with `noflock`). Written here rather than taken
  from filelock: filelock 4's FileLock costs ~130 us per acquire + release on the development VM
  (fork tracking, an instance registry, path checks), a bare flock 4 us, and every task takes two.
- "soft": filelock.SoftFileLock, an O_EXCL marker file. Use it when workers on several NFS
  clients share a run: native flock does not exclude across NFS client caches. A holder killed
  with SIGKILL leaves its marker; peers break it after `stale_after` seconds (our critical
  sections last milliseconds, so 60 s is generous).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from filelock import BaseFileLock, SoftFileLock, Timeout

from pipe_rules.contracts.errors import StateError

LOCK_MODES = ("flock", "soft")
LOCK_TIMEOUT_S = 60.0
SOFT_STALE_AFTER_S = 60.0


_NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK)


class FlockLock:
    """An exclusive flock on `path` (created if missing), polled until LOCK_TIMEOUT_S."""

    def __init__(self, path: Path, timeout: float = LOCK_TIMEOUT_S):
        self._path = path
        self._timeout = timeout
        self._fd: int | None = None
        self._soft: BaseFileLock | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a run folder from before its locks/ folder existed
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline, pause = time.monotonic() + self._timeout, 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise Timeout(str(self._path)) from None
                time.sleep(pause)
                pause = min(2 * pause, 0.02)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_FLOCK:
                    raise
                self._soft = _soft_lock(Path(f"{self._path}.soft"))  # this filesystem has no flock
                self._soft.acquire()
                return

    def release(self) -> None:
        if self._soft is not None:
            self._soft.release()
            self._soft = None
        elif self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor of this open file releases the flock


def _soft_lock(path: Path) -> BaseFileLock:
    return SoftFileLock(path, timeout=LOCK_TIMEOUT_S, lifetime=SOFT_STALE_AFTER_S, is_singleton=False)


def make_lock(path: Path, mode: str) -> BaseFileLock | FlockLock:
    if mode == "flock":
        return FlockLock(path)
    if mode == "soft":
        return _soft_lock(path)
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
