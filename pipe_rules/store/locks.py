"""Per-file locks, in the one mode a run was staged with (run.json `lock_mode`).

Locks here only keep writers from colliding; correctness never rests on them: every document a
lock guards is written as a new version by compare-and-set (store/versioned.py), so a lock that
does not exclude (flock across sshfs clients, a soft lock broken too early) costs a retry, never
a lost update.

- "flock": fcntl.flock on the lock file, opened per acquisition (so two threads of one process
  exclude each other too). A bare flock costs ~4 us here; filelock 4's FileLock ~130 us. Where the
  filesystem refuses flock (Lustre `noflock`) this is an error naming the run's mode, never a
  silent switch to another file (which would not exclude the nodes where flock works).
- "soft": a lease lock. The holder creates the lock file exclusively (O_EXCL) with who it is
  (host, boot id, pid namespace, pid, process start time) and renews its lease while it holds the
  lock. A waiter breaks it when the holder is dead (same host, boot and pid namespace: asked
  through psutil) or when it saw the lock unchanged for a whole lease (any host: measured on the
  waiter's own monotonic clock, so clock skew between nodes does not matter). Breaking is one
  rename aside, so a breaker killed mid-break leaves nothing that blocks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path

from pipe_rules.contracts.errors import PipeRulesError, StateError
from pipe_rules.store.fsio import open_or_create, remove_if_present, taken_by_other, vanished
from pipe_rules.store.hostid import HOST_KEY, pid_alive, process_started, same_host

LOCK_MODES = ("flock", "soft")
LOCK_TIMEOUT_S = 60.0
SOFT_LEASE_S = 10.0  # default; a run's own is `lock_lease_s` in run.json (set_soft_lease)
_soft_lease_s = SOFT_LEASE_S


def set_soft_lease(lease_s: float) -> None:
    """The lease of soft locks this process takes from now on (a run's `lock_lease_s`)."""
    global _soft_lease_s
    _soft_lease_s = float(lease_s)
_NO_FLOCK = (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK)


class LockTimeout(PipeRulesError):
    """A lock was not granted in time. Not a StateError: nothing is corrupt, the caller may retry."""


class LockUnsupported(PipeRulesError):
    """The run's lock mode cannot work on this filesystem (flock refused)."""


def _pause(pause: float) -> float:
    time.sleep(pause * (0.5 + random.random()))
    return min(2 * pause, 0.05)


class FlockLock:
    """An exclusive flock on `path` (created if missing), polled until `timeout`."""

    def __init__(self, path: Path, timeout: float | None = None):
        self._path = path
        self._timeout = LOCK_TIMEOUT_S if timeout is None else timeout
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = open_or_create(self._path, os.O_RDWR)
        except FileNotFoundError:  # a run folder from before its locks/ folder existed
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            fd = open_or_create(self._path, os.O_RDWR)
        deadline, pause = time.monotonic() + self._timeout, 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(f"could not take the lock within {self._timeout:.0f} s; is a process stuck "
                                      "holding it?", path=self._path) from None
                pause = _pause(pause)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_FLOCK:
                    raise
                raise LockUnsupported(
                    f"flock is refused on this filesystem ({errno.errorcode.get(exc.errno, exc.errno)}) but this run "
                    "was staged with lock_mode flock; stage it again under a new run name with lock_mode: soft "
                    "(or auto)", path=self._path) from None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor of this open file releases the flock


class _Renewer:
    """One daemon thread per process that renews the leases of the soft locks it holds."""

    def __init__(self) -> None:
        self._held: dict[int, "LeaseLock"] = {}
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._interval = 60.0

    def add(self, lock: "LeaseLock") -> None:
        with self._guard:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="soft-lock-lease", daemon=True)
                self._thread.start()
            self._held[id(lock)] = lock
            if lock.lease_s / 4 < self._interval:
                self._wake.set()  # sleep no longer than this lock's renewal interval

    def remove(self, lock: "LeaseLock") -> None:
        with self._guard:
            self._held.pop(id(lock), None)

    def _run(self) -> None:
        while True:
            with self._guard:
                held = list(self._held.values())
            self._interval = min([lock.lease_s / 4 for lock in held] + [_soft_lease_s / 4])
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._guard:
                held = list(self._held.values())
            now = time.monotonic()
            for lock in held:
                if now - lock.renewed_at >= lock.lease_s / 4:  # critical sections of milliseconds need none
                    lock.renew()


_RENEWER = _Renewer()


class LeaseLock:
    """The soft lock (see the module docstring)."""

    def __init__(self, path: Path, timeout: float | None = None, lease_s: float | None = None):
        self._path = Path(path)
        self._timeout = LOCK_TIMEOUT_S if timeout is None else timeout
        self._lease_s = _soft_lease_s if lease_s is None else lease_s
        self._token: str | None = None
        self._renewals = 0
        self.renewed_at = 0.0

    @property
    def lease_s(self) -> float:
        return self._lease_s

    def _content(self) -> str:
        return json.dumps({**HOST_KEY, "pid": os.getpid(), "started": process_started(os.getpid()),
                           "token": self._token, "lease_s": self._lease_s, "renewals": self._renewals})

    def _try_create(self) -> bool:
        try:
            fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            return self._try_create()
        except OSError as exc:
            if taken_by_other(exc, self._path) or exc.errno == errno.ESTALE:
                return False  # ESTALE: a cached name of a lock just released by another client; look again
            raise
        try:
            os.write(fd, self._content().encode())
        finally:
            os.close(fd)
        return True

    def acquire(self) -> None:
        self._token, self._renewals = uuid.uuid4().hex, 0
        deadline, pause = time.monotonic() + self._timeout, 0.0005
        seen: tuple[object, float] | None = None  # (what the lock looked like, when first seen so)
        while True:
            if self._try_create():
                self.renewed_at = time.monotonic()
                _RENEWER.add(self)
                return
            look = _look(self._path)
            if look is None:  # released meanwhile
                continue
            holder, key = look
            now = time.monotonic()
            if seen is None or seen[0] != key:
                seen = (key, now)
            lease = holder.get("lease_s") if isinstance(holder.get("lease_s"), (int, float)) else self._lease_s
            if _dead_here(holder) or now - seen[1] >= max(lease, self._lease_s):
                break_lock(self._path, key)
                seen = None
                continue
            if now >= deadline:
                raise LockTimeout(f"could not take the soft lock within {self._timeout:.0f} s (held by "
                                  f"{holder.get('host', '?')} pid {holder.get('pid', '?')})", path=self._path)
            pause = _pause(pause)

    def renew(self) -> None:
        """Rewrite the lock file with a new renewal count, if it is still ours (waiters see it change)."""
        look = _look(self._path)
        if look is None or look[0].get("token") != self._token:
            return
        self._renewals += 1
        self.renewed_at = time.monotonic()
        try:
            with open(self._path, "r+", encoding="utf-8") as handle:
                handle.write(self._content())
                handle.truncate()
        except OSError:
            pass  # released or broken meanwhile

    def release(self) -> None:
        _RENEWER.remove(self)
        look = _look(self._path)
        if look is not None and look[0].get("token") == self._token:
            remove_if_present(self._path)
        self._token = None


def _look(path: Path) -> tuple[dict, object] | None:
    """(holder record, change key) of the lock file; None if there is none. A file being written
    (empty, partial) reads as an unknown holder whose key changes as it is written."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
            info = os.fstat(handle.fileno())
    except OSError as exc:
        if vanished(exc):
            return None
        raise
    try:
        holder = json.loads(raw)
        if not isinstance(holder, dict):
            holder = {}
    except (ValueError, UnicodeDecodeError):
        holder = {}
    return holder, (raw, info.st_ino, info.st_mtime_ns)


def _dead_here(holder: dict) -> bool:
    """The holder ran on this host, boot and pid namespace, and that process is gone."""
    if not same_host(holder):
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    return not pid_alive(pid, holder.get("started"))


def break_lock(path: Path, key: object) -> bool:
    """Move a stale lock aside (one rename: a breaker killed after it leaves nothing that blocks).
    If what was moved is not the lock judged stale (it was replaced meanwhile), put it back."""
    aside = path.with_name(f".{path.name}.broken.{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except OSError as exc:
        if vanished(exc):
            return False
        raise
    look = _look(aside)
    if look is not None and look[1] != key:
        try:
            os.link(aside, path)
        except OSError as exc:
            if not taken_by_other(exc, path):
                raise
    remove_if_present(aside)
    return look is not None and look[1] == key


def make_lock(path: Path, mode: str) -> LeaseLock | FlockLock:
    if mode == "flock":
        return FlockLock(path)
    if mode == "soft":
        return LeaseLock(path)
    raise StateError(f"unknown lock mode {mode!r}; use one of {', '.join(LOCK_MODES)}", field="lock_mode")


class locked:
    """Context manager: hold the lock at `path` in `mode` (raises LockTimeout, LockUnsupported)."""

    def __init__(self, path: Path, mode: str):
        self._lock = make_lock(path, mode)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()
