"""`renameat2(RENAME_NOREPLACE)`: an exclusive rename, one metadata call where link + unlink are two.

Python's os module does not expose renameat2, so it is called through ctypes (glibc 2.28+). The
kernel's contract (rename(2)): a filesystem that does not support the flag refuses it with EINVAL
(NFS, Lustre, sshfs, and FUSE daemons without rename2 do), it never ignores it. On the first such
refusal this process stops trying and callers fall back to a hard link, which is exclusive on every
filesystem; correctness never depends on which of the two is used.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_REFUSED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM)

try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    _renameat2.restype = ctypes.c_int
except (AttributeError, OSError):  # not glibc, or too old
    _renameat2 = None
_usable = {"on": _renameat2 is not None and os.environ.get("PIPE_RULES_NO_RENAMEAT2", "") != "1"}


def exclusive_rename(src: Path, dst: Path) -> bool:
    """Rename `src` to `dst` unless `dst` exists: True if renamed; False if this filesystem (or libc)
    cannot do it (use a hard link instead); FileExistsError if `dst` exists."""
    if not _usable["on"]:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _REFUSED:  # EPERM: sshfs answers some refusals so; the link path then decides
        _usable["on"] = False
        return False
    raise OSError(err, os.strerror(err), str(dst))


def disable() -> None:
    """Use hard links from now on (tests compare both paths)."""
    _usable["on"] = False
