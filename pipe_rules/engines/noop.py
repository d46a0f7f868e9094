"""The `noop` engine computes nothing: it measures the machinery (benchmarks) and injects faults.

`sleep_s` makes a task last that long, `alloc_mb` makes it hold that much memory (touched, so it
is resident) while it runs, and `fail: ess|transient` raises that failure class. They are read from
the payload first, then from the run options (so one option can slow a whole run).
The sleep is cut into short steps so that a signal handler raising in the main thread (SIGTERM at
walltime) interrupts the task within a twentieth of a second.
"""

from __future__ import annotations

import time
from pathlib import Path

from pipe_rules.engines.base import EngineFailure, EngineResult, FailureClass, InvalidRequest, check_request

ALL_FAMILIES = frozenset({"conf_opt", "conf_sp", "ts_guess_batch_method", "ts_opt", "species_sp",
                          "species_freq", "irc", "rotor_scan_1d"})
_STEP_S = 0.05


def _setting(name: str, payload: dict, options: dict):
    return payload.get(name, options.get(name))


class NoopEngine:
    name = "noop"
    families = ALL_FAMILIES
    levels = None
    writes_files = False  # the worker need not make its attempt folder the cwd

    def version(self) -> str:
        try:
            from pipe_rules import __version__
        except ImportError:
            return "0"
        return str(__version__)

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        check_request(self, family, level)
        sleep_s = _setting("sleep_s", payload, options) or 0
        if isinstance(sleep_s, bool) or not isinstance(sleep_s, (int, float)) or sleep_s < 0:
            raise InvalidRequest(f"noop engine: 'sleep_s' must be a number of seconds >= 0, got {sleep_s!r}")
        alloc_mb = _setting("alloc_mb", payload, options) or 0
        if isinstance(alloc_mb, bool) or not isinstance(alloc_mb, (int, float)) or alloc_mb < 0:
            raise InvalidRequest(f"noop engine: 'alloc_mb' must be a number of MB >= 0, got {alloc_mb!r}")
        fail = _setting("fail", payload, options)
        if fail and fail not in {c.value for c in FailureClass}:
            raise InvalidRequest(f"noop engine: 'fail' must be one of "
                             f"{', '.join(c.value for c in FailureClass)}, got {fail!r}")
        held = bytearray(int(alloc_mb * 1024 * 1024))  # zero-filled pages are resident once written
        held[::4096] = b"\x01" * len(range(0, len(held), 4096))
        deadline = time.monotonic() + float(sleep_s)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(_STEP_S, left))
        del held
        if fail:
            raise EngineFailure(FailureClass(fail), "injected_failure", f"noop engine told to fail ({fail})")
        return EngineResult(energy_hartree=0.0, geometry=payload.get("xyz"), converged=True)


ENGINE = NoopEngine()
