"""Measure what a pair of client mounts of one shared folder does: the facts pipe_rules relies on.

`probe(a, b)` takes two mount points of the same folder and returns, for each property, True/False
(or a number): whether locks taken through one mount exclude the other, whether exclusive creates
(O_EXCL, link, rename) through the two mounts let exactly one win, and how fresh one mount's view
of the other's changes is (listing, attributes, content). Run as a script to print them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
import uuid
from pathlib import Path


def _lock_excludes(a: Path, b: Path, kind: str) -> bool | str:
    name = f"probe-lock-{uuid.uuid4().hex}"
    fa = os.open(a / name, os.O_RDWR | os.O_CREAT, 0o644)
    fb = None
    try:
        take = (lambda fd: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)) if kind == "flock" else \
               (lambda fd: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
        try:
            take(fa)
        except OSError as exc:
            return f"refused ({errno.errorcode.get(exc.errno, exc.errno)})"
        for _ in range(100):  # the file may take a moment to appear through the other mount
            try:
                fb = os.open(b / name, os.O_RDWR)
                break
            except FileNotFoundError:
                time.sleep(0.05)
        try:
            take(fb)
            return False
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return True
            return f"refused ({errno.errorcode.get(exc.errno, exc.errno)})"
    finally:
        for fd in (fa, fb):
            if fd is not None:
                os.close(fd)
        os.unlink(a / name)


def _exclusive(a: Path, b: Path, how: str) -> bool:
    """Create the same name through both mounts: True if the second is refused."""
    name = f"probe-{how}-{uuid.uuid4().hex}"
    wins = 0
    for mount in (a, b):
        try:
            if how == "o_excl":
                os.close(os.open(mount / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            elif how == "mkdir":
                os.mkdir(mount / name)
            elif how == "link":
                src = mount / f".{name}.{mount.name}"
                src.write_text("x")
                try:
                    os.link(src, mount / name)
                finally:
                    os.unlink(src)
            wins += 1
        except FileExistsError:
            pass
    (os.rmdir if how == "mkdir" else os.unlink)(a / name)
    return wins == 1


def _rename_once(a: Path, b: Path) -> bool:
    """Rename one file away through each mount: True if exactly one rename succeeds."""
    name = f"probe-rename-{uuid.uuid4().hex}"
    (a / name).write_text("token")
    wins = 0
    for i, mount in enumerate((a, b)):
        try:
            os.rename(mount / name, mount / f"{name}.taken{i}")
            wins += 1
        except FileNotFoundError:
            pass
    for i in range(2):
        try:
            os.unlink(a / f"{name}.taken{i}")
        except FileNotFoundError:
            pass
    return wins == 1


def _fresh(a: Path, b: Path) -> dict:
    """Right after a change through mount a, does mount b see it? (listing, stat, content)."""
    folder = f"probe-dir-{uuid.uuid4().hex}"
    (a / folder).mkdir()
    os.listdir(b / folder)  # let b cache the (empty) listing and the folder's attributes
    try:
        os.stat(b / folder / "new")  # and the name's absence
    except FileNotFoundError:
        pass
    (a / folder / "new").write_text("1")
    try:
        opens = (b / folder / "new").read_text() == "1"
    except FileNotFoundError:
        opens = False
    listing = "new" in os.listdir(b / folder)
    os.stat(b / folder / "new")
    before = (b / folder / "new").read_text()
    tmp = a / folder / ".new.tmp"
    tmp.write_text("22")
    os.replace(tmp, a / folder / "new")
    content = (b / folder / "new").read_text() == "22"
    size = os.stat(b / folder / "new").st_size == 2
    os.unlink(a / folder / "new")
    gone = not (b / folder / "new").exists()
    gone_listing = "new" not in os.listdir(b / folder)
    for name in os.listdir(a / folder):
        os.unlink(a / folder / name)
    os.rmdir(a / folder)
    return {"new_name_opens_at_once": opens, "new_file_listed_at_once": listing, "replaced_content_seen_at_once": content and before == "1",
            "replaced_size_seen_at_once": size, "unlink_seen_at_once": gone, "unlink_listed_at_once": gone_listing}


def probe(a: Path, b: Path) -> dict:
    a, b = Path(a), Path(b)
    return {
        "flock_excludes_across_mounts": _lock_excludes(a, b, "flock"),
        "lockf_excludes_across_mounts": _lock_excludes(a, b, "lockf"),
        "o_excl_exclusive_across_mounts": _exclusive(a, b, "o_excl"),
        "link_exclusive_across_mounts": _exclusive(a, b, "link"),
        "mkdir_exclusive_across_mounts": _exclusive(a, b, "mkdir"),
        "rename_succeeds_once_across_mounts": _rename_once(a, b),
        **_fresh(a, b),
    }


if __name__ == "__main__":
    print(json.dumps(probe(Path(sys.argv[1]), Path(sys.argv[2])), indent=1))
