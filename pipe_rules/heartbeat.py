"""A thread that renews the running task's lease, so a long task is never orphaned while its worker lives."""

from __future__ import annotations

import logging
import threading

from .errors import OwnershipLost, StateError
from .layout import RunLayout
from .lifecycle import Claim, renew_lease

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, layout: RunLayout, claim: Claim, lock_mode: str, lease_s: float, interval_s: float):
        self._args = (layout, claim, lock_mode, lease_s)
        self._interval = interval_s
        self._stop = threading.Event()
        self.lost = threading.Event()
        self.beats = 0
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.task_id}", daemon=True)

    def _run(self) -> None:
        layout, claim, lock_mode, lease_s = self._args
        while not self._stop.wait(self._interval):
            try:
                renew_lease(layout, claim, lock_mode, lease_s)
                self.beats += 1
            except OwnershipLost as exc:
                log.warning("%s", exc)
                self.lost.set()
                return
            except (StateError, OSError) as exc:  # a slow or flaky filesystem: try again next beat
                log.warning("heartbeat for %s failed: %s", claim.task_id, exc)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
