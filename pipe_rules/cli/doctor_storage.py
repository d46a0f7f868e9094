"""Doctor checks of the run folder: writable, free space, the filesystem (NFS, Lustre...) and whether
flock really excludes there (it may not across the clients of a network filesystem)."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path

from pipe_rules.cli.doctor_scheduler import FAIL, OK, WARN, Check
from pipe_rules.inputs.campaign import Campaign
from pipe_rules.store.filesystem import COHERENT, choose_lock_mode, flock_across_clients, mount_of

WARN_FREE_BYTES, FAIL_FREE_BYTES = 1 << 30, 50 << 20
WARN_FREE_INODES = 100_000  # a task folder costs about six inodes


def check_run_folder(campaign: Campaign, cwd: Path) -> list[Check]:
    folder = campaign.run_root / campaign.name
    folder = folder if folder.is_absolute() else cwd / folder
    existing = folder
    while not existing.is_dir():  # staging creates the rest; test where it will start creating
        if existing.exists() or existing == existing.parent:
            return [Check(FAIL, "run folder", f"{existing} is in the way of {folder} (not a folder)",
                          "set run_root in the campaign config to a folder you can write")]
        existing = existing.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".pipe_rules_doctor.", dir=existing)
    except OSError as exc:
        return [Check(FAIL, "run folder", f"cannot write in {existing} ({exc.strerror}), so {folder} "
                      "cannot be created", "set run_root in the campaign config to a folder you can write, on a "
                      "filesystem the compute nodes share")]
    try:
        checks = [Check(OK, "run folder", f"{existing} is writable" + ("" if existing == folder else f" ({folder} "
                        "will be created there)"))]
        checks.append(_filesystem(existing, campaign.lock_mode))
        checks.append(_free_space(existing))
        checks.append(_flock(fd, probe, campaign.lock_mode))
    finally:
        os.close(fd)
        os.unlink(probe)
    return checks


def filesystem_check(path: Path, mounts_text: str, lock_mode: str) -> Check:
    """The lock mode against what the filesystem does with flock across its clients (store/filesystem.py).
    FAIL where the configured mode is known not to work there; WARN where flock would not exclude
    across nodes (task states stay correct, each write being a compare-and-set, but writers collide
    and retry instead of waiting)."""
    point, fstype, options = mount_of(path, mounts_text)
    coherence, why = flock_across_clients(fstype, options)
    where = f"{path} is on {fstype} (mounted at {point})"
    mode, reason = choose_lock_mode(lock_mode, {"type": fstype, "flock": coherence, "why": why})
    if mode is None:
        return Check(FAIL, "filesystem", f"{where}: {reason}", "set lock_mode: auto (or soft) in the campaign config")
    if mode == "flock" and coherence != COHERENT:
        return Check(WARN, "filesystem", f"{where}: {why}; flock may not exclude across {fstype} clients",
                     "with workers on several nodes set lock_mode: soft (or auto) in the campaign config")
    return Check(OK, "filesystem", f"{where}; lock_mode {lock_mode}" + (f" -> {mode}" if lock_mode == "auto" else "")
                 + f" ({why})")


def _filesystem(path: Path, lock_mode: str) -> Check:
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        return Check(WARN, "filesystem", "cannot read /proc/mounts: filesystem type unknown",
                     "check by hand that flock works on the run folder, or set lock_mode: soft")
    return filesystem_check(path, mounts, lock_mode)


def _free_space(path: Path) -> Check:
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    detail = f"{free / 1e9:.1f} GB free" + (f", {stat.f_favail:,} inodes free" if stat.f_files else "")
    fix = "free space there or move run_root (each task writes a few small files per attempt)"
    if free < FAIL_FREE_BYTES:
        return Check(FAIL, "free space", detail, fix)
    if free < WARN_FREE_BYTES or (stat.f_files and stat.f_favail < WARN_FREE_INODES):
        return Check(WARN, "free space", detail, fix)
    return Check(OK, "free space", detail)


def _flock(fd: int, probe: str, lock_mode: str) -> Check:
    """Take flock on one file descriptor, then try again through a second one: it must be refused."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if lock_mode != "flock":
            return Check(OK, "flock", f"refused here ({exc.strerror}); lock_mode {lock_mode} will use soft locks")
        return Check(FAIL, "flock", f"refused here ({exc.strerror}): with lock_mode flock every worker would stop",
                     "set lock_mode: auto (or soft) in the campaign config")
    other = os.open(probe, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return Check(WARN, "flock", "a second flock on the same file was granted: flock does not exclude here",
                     "set lock_mode: soft in the campaign config")
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
    finally:
        os.close(other)
    return Check(OK, "flock", "works here (a second lock on the same file was refused)")
