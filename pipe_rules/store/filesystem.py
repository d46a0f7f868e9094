"""Which filesystem a run folder is on, and which lock mode is right there (decided once, at staging).

What each kind does with flock across its clients (from /proc/mounts type and options):
- local disks (ext4, xfs, btrfs, tmpfs, ...): one node, flock excludes: flock.
- GlusterFS (measured here: flock and lockf exclude across two mounts), GPFS: coherent: flock.
- NFS: the Linux client sends flock to the server as a whole-file lock (coherent) unless mounted
  with `local_lock=flock` or `local_lock=all`: then only within one node.
- Lustre: `flock` coherent, `localflock` one node only, neither (the default): flock is refused.
- sshfs (measured here: flock does NOT exclude across two mounts), other FUSE, CIFS, Ceph, BeeGFS:
  not known to be coherent.
State never depends on it (every document is a compare-and-set, store/versioned.py): a lock that
does not exclude only costs retries. But flock where flock is refused stops every worker, so that
one is refused at staging and a FAIL in `doctor`; `auto` (the default) picks soft wherever flock is
not known to exclude across clients.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
from pathlib import Path

LOCAL = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs", "f2fs", "overlay", "jfs", "reiserfs",
                   "ramfs", "bcachefs", "vfat", "exfat", "apfs", "hfs", "ufs"})
COHERENT = "coherent"  # flock excludes across every client
NODE_LOCAL = "node-local"  # flock excludes only processes of one client node
REFUSED = "refused"  # flock fails (ENOSYS, ENOLCK...)
UNKNOWN = "unknown"


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


def flock_across_clients(fstype: str, options: str) -> tuple[str, str]:
    """(COHERENT | NODE_LOCAL | REFUSED | UNKNOWN, why) for a filesystem type and its mount options."""
    flags = options.split(",")
    if fstype in LOCAL:
        return COHERENT, f"{fstype} is a local filesystem (one node)"
    if fstype in ("fuse.glusterfs", "glusterfs"):
        return COHERENT, "GlusterFS locks are held by the server (measured: flock excludes across mounts)"
    if fstype in ("gpfs", "fuse.gpfs"):
        return COHERENT, "GPFS flock is cluster-wide"
    if fstype.startswith("nfs"):
        if "local_lock=flock" in flags or "local_lock=all" in flags:
            return NODE_LOCAL, f"{fstype} mounted with local_lock: flock excludes only within one node"
        return COHERENT, f"{fstype}: the client sends flock to the server as a whole-file lock"
    if fstype == "lustre":
        if "flock" in flags:
            return COHERENT, "Lustre mounted with flock"
        if "localflock" in flags:
            return NODE_LOCAL, "Lustre mounted with localflock: flock excludes only within one node"
        return REFUSED, "Lustre mounted without flock: flock is refused there"
    if fstype == "fuse.sshfs":
        return NODE_LOCAL, "sshfs: flock does not exclude across mounts (measured)"
    return UNKNOWN, f"{fstype}: not known to keep flock coherent across clients"


def probe_flock(folder: Path) -> tuple[bool, str]:
    """Can flock be taken in `folder` at all, and does a second open file get refused? (True, "")
    if both; (False, why) otherwise. Says nothing about other nodes."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".pipe_rules_flock.", dir=folder)
    except OSError as exc:
        return False, f"cannot create a probe file ({exc.strerror})"
    other = None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return False, f"flock refused ({errno.errorcode.get(exc.errno, exc.errno)})"
        other = os.open(probe, os.O_RDWR)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False, "a second flock on the same file was granted: flock does not exclude here"
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False, f"flock failed ({errno.errorcode.get(exc.errno, exc.errno)})"
        return True, ""
    finally:
        for handle in (fd, other):
            if handle is not None:
                os.close(handle)
        os.unlink(probe)


def describe(folder: Path) -> dict:
    """The filesystem of `folder` (which must exist): type, mount point, options, flock across clients."""
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        mounts = ""
    point, fstype, options = mount_of(folder, mounts)
    coherence, why = flock_across_clients(fstype, options)
    works, failure = probe_flock(folder)
    if not works:
        coherence, why = REFUSED, f"{why}; here: {failure}"
    return {"type": fstype, "mount": point, "options": options, "flock": coherence, "why": why}


def choose_lock_mode(configured: str, fs: dict) -> tuple[str | None, str]:
    """(mode, why) for a run on `fs` with the config's `lock_mode`; mode None = refuse (why says so)."""
    if configured == "auto":
        if fs["flock"] == COHERENT:
            return "flock", f"auto: flock ({fs['why']})"
        return "soft", f"auto: soft ({fs['why']})"
    if configured == "flock" and fs["flock"] == REFUSED:
        return None, (f"lock_mode flock cannot work on this {fs['type']} filesystem ({fs['why']}); set lock_mode: "
                      "soft or auto")
    return configured, f"{configured} as configured ({fs['why']})"
