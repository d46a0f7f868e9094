"""Engine thread limits through threadpoolctl: OpenMP (tblite, PySCF) and BLAS (numpy's OpenBLAS).

A worker runs many tasks in one process, so the limit is applied around each engine call and the
previous counts restored afterwards: one run's `cores` never leaks into the next task. Only the
libraries loaded when the limit starts are limited, so each engine enters it after importing its
own. Finding the loaded libraries costs ~0.4 ms; the controller is reused until a new module has
been imported (the only way a new native library gets loaded here), so a task pays ~20 us.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Any

from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def _controller(n_modules: int) -> ThreadpoolController:  # noqa: ARG001 - the cache key
    return ThreadpoolController()


def controller() -> ThreadpoolController:
    """The thread pools (OpenMP, BLAS) of every native library loaded into this process so far."""
    return _controller(len(sys.modules))


def limited_threads(cores: int | None) -> Any:
    """Context manager: every OpenMP and BLAS pool at `cores` threads for the engine call."""
    if not cores or cores < 1:
        return nullcontext()
    return _limited(int(cores))


@contextmanager
def _limited(cores: int):
    with controller().limit(limits=cores):
        yield
