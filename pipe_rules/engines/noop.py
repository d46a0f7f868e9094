"""The `noop` engine: computes nothing. For benchmarks of the machinery and for fault injection.

`sleep_s` (payload or run option) makes a task last that long, in short steps so signals are
handled promptly; `fail: ess|transient` raises that failure class.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import __version__
from .base import EngineFailure, EngineResult, FailureClass

ALL_FAMILIES = frozenset({"conf_opt", "conf_sp", "ts_guess_batch_method", "ts_opt", "species_sp",
                          "species_freq", "irc", "rotor_scan_1d"})


class NoopEngine:
    name = "noop"
    families = ALL_FAMILIES
    levels = None

    def version(self) -> str:
        return __version__

    def run(self, family: str, level: str, payload: dict, options: dict, workdir: Path, cores: int) -> EngineResult:
        sleep_s = float(payload.get("sleep_s", options.get("sleep_s", 0)))
        deadline = time.monotonic() + sleep_s
        while time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        fail = payload.get("fail", options.get("fail"))
        if fail:
            raise EngineFailure(FailureClass(fail), "injected_failure", f"noop engine told to fail ({fail})")
        return EngineResult(energy_hartree=0.0, geometry=payload.get("xyz"), converged=True)


ENGINE = NoopEngine()
