"""What ingestion does with tasks left unfinished: wait for live leases, then hand them back.

Ingestion runs on the submit host (a login node), where no engine may run. So it never executes a
task: it reconciles (re-queues tasks whose lease expired), waits while tasks are still held by a
worker that heart-beats (at most one lease plus the clock skew: by then every dead worker's lease
has expired), and if tasks are still unfinished it hands them back to the cluster: it removes the
summary file (`shards/<shard>.json`, the Snakemake output of `run_shard`) of every shard that
still has PENDING tokens, so the next Snakemake invocation submits one array element per such
shard, and that element's worker finishes them. A marker (`results/handed_back.json`) says so.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from pipe_rules.store.fsio import atomic_write_json, remove_if_present
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TaskState

UNFINISHED = (TaskState.PENDING, TaskState.CLAIMED, TaskState.RUNNING, TaskState.FAILED_RETRYABLE,
              TaskState.ORPHANED)


@dataclass
class Settled:
    """The run after the wait: counts per state, and the shards handed back (empty: all ended)."""

    counts: dict[str, int]
    unfinished: dict[str, int] = field(default_factory=dict)
    handed_back: list[str] = field(default_factory=list)
    waited_s: float = 0.0

    def line(self, layout: RunLayout) -> str:
        states = ", ".join(f"{state} {n}" for state, n in self.unfinished.items())
        where = (f"handed back to {', '.join(self.handed_back)} (their shards/*.json removed): run the "
                 "campaign again and Snakemake submits an array element per shard to finish them"
                 if self.handed_back else "still held by a live worker: run the campaign again once it ended")
        return (f"{layout.root}: {sum(self.unfinished.values())} task(s) not finished after every shard job "
                f"ended ({states}); {where}. Ingestion never runs tasks on this host.")


def handback_marker(layout: RunLayout):
    return layout.results_dir / "handed_back.json"


def _pending_shards(layout: RunLayout) -> list[str]:
    """Shards whose pending folder still holds a claim token."""
    shards = []
    try:
        names = sorted(os.listdir(layout.pending_dir))
    except FileNotFoundError:
        return []
    for shard in names:
        folder = layout.pending_shard_dir(shard)
        buckets = [folder / b for b in os.listdir(folder) if (folder / b).is_dir()]
        if any(os.listdir(bucket) for bucket in buckets):
            shards.append(shard)
    return shards


def _unfinished(counts: dict[str, int]) -> dict[str, int]:
    return {s.value: counts[s.value] for s in UNFINISHED if counts.get(s.value)}


def settle(layout: RunLayout, wait_s: float | None = None, poll_s: float | None = None, final=None) -> Settled:
    """Reconcile; wait (default: one lease plus the clock skew) while tasks are in flight; then
    hand back whatever is unfinished. Reads and small state writes only: no task is ever run.
    `final`: a FinalVersions the reconciles note ended tasks in, for the ingestion that follows."""
    run = read_run(layout)
    limit = run.lease_s + run.clock_skew_s + 1.0 if wait_s is None else wait_s
    poll = min(run.heartbeat_s, 2.0) if poll_s is None else poll_s
    started = time.monotonic()
    counts = reconcile(layout, final=final).counts
    while _unfinished(counts) and time.monotonic() - started < limit:
        in_flight = counts.get("CLAIMED", 0) + counts.get("RUNNING", 0)
        if not in_flight:  # nobody holds anything: waiting cannot help
            break
        time.sleep(poll)
        counts = reconcile(layout, final=final).counts
    settled = Settled(counts, _unfinished(counts), waited_s=time.monotonic() - started)
    marker = handback_marker(layout)
    if not settled.unfinished:
        remove_if_present(marker)
        return settled
    settled.handed_back = _pending_shards(layout)
    for shard in settled.handed_back:
        remove_if_present(layout.shard_record(shard))
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"at": time.time(), "unfinished": settled.unfinished,
                               "shards": settled.handed_back}, pretty=True)
    return settled
