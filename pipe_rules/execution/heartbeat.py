"""One thread per worker that renews the running task's lease, so a long task is never orphaned
while its worker lives. Long-lived on purpose: starting a thread per task cost more than the
whole claim of a no-op task."""

from __future__ import annotations

import logging
import threading

from pipe_rules.contracts.errors import OwnershipLost, StateError
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import Claim, renew_lease
from pipe_rules.store.locks import LockTimeout

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, layout: RunLayout, lock_mode: str, lease_s: float, interval_s: float, on_lost=None):
        self._layout, self._lock_mode, self._lease_s = layout, lock_mode, lease_s
        self._on_lost = on_lost  # called with the claim when it was taken away (the worker stops its engine)
        self._interval = interval_s
        self._claim: Claim | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self.lost = threading.Event()
        self.beats = 0
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def track(self, claim: Claim | None) -> None:
        """Renew `claim` from now on (None: nothing is running)."""
        with self._guard:
            self._claim = claim
            self.lost.clear()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._guard:
                claim = self._claim
                if claim is None:
                    continue
                try:
                    renew_lease(self._layout, claim, self._lock_mode, self._lease_s)
                    self.beats += 1
                except OwnershipLost as exc:
                    log.warning("%s", exc)
                    self.lost.set()
                    self._claim = None
                    if self._on_lost is not None:
                        self._on_lost(claim)
                except (StateError, LockTimeout, OSError) as exc:  # a slow or flaky filesystem: try again next beat
                    log.warning("heartbeat for %s failed: %s", claim.task_id, exc)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
