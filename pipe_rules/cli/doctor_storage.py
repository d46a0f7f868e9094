"""Doctor checks of the run folder: writable, free space, the filesystem (NFS, Lustre...) and whether
flock really excludes there (it may not across the clients of a network filesystem)."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
from pathlib import Path

from pipe_rules.cli.doctor_scheduler import FAIL, OK, WARN, Check
from pipe_rules.inputs.campaign import Campaign

NETWORK_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "fuse.glusterfs")
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


def mount_of(path: Path, mounts_text: str) -> tuple[str, str, str]:
    """(mount point, filesystem type, options) of the mount holding `path`, from /proc/mounts text."""
    best = ("/", "unknown", "")
    target = os.path.realpath(path)
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])  # \040 is a space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fields[2], fields[3])
    return best


def filesystem_check(path: Path, mounts_text: str, lock_mode: str) -> Check:
    point, fstype, options = mount_of(path, mounts_text)
    where = f"{path} is on {fstype} (mounted at {point})"
    if fstype not in NETWORK_FS:
        return Check(OK, "filesystem", where)
    if lock_mode == "soft":
        return Check(OK, "filesystem", f"{where}; lock_mode soft (O_EXCL marker locks) suits it")
    if fstype == "lustre":
        flags = options.split(",")
        how = ("mounted with flock (coherent across nodes, if the servers allow it)" if "flock" in flags else
               "mounted with localflock: flock excludes only within one node" if "localflock" in flags else
               "mounted without flock: flock is refused there and filelock falls back to soft locks")
        return Check(WARN, "filesystem", f"{where}, {how}",
                     "with workers on several nodes set lock_mode: soft in the campaign config")
    return Check(WARN, "filesystem", f"{where}: flock may not exclude across {fstype} clients",
                 "with workers on several nodes set lock_mode: soft in the campaign config (O_EXCL marker locks)")


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
        if lock_mode == "soft":
            return Check(OK, "flock", f"refused here ({exc.strerror}); lock_mode soft does not need it")
        return Check(WARN, "flock", f"refused here ({exc.strerror}): lock_mode flock falls back to soft locks",
                     "set lock_mode: soft in the campaign config to say so explicitly")
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
