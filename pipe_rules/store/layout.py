"""Where everything of a run lives on disk; the only module that builds paths inside a run folder.

Task folders are spread over 256 buckets so no folder holds more than a few thousand entries
even at 100,000 tasks (shared filesystems slow down on huge directories).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from pipe_rules.contracts.ids import check_safe_id
from pipe_rules.store import versioned


def bucket_of(task_id: str) -> str:
    return hashlib.sha1(task_id.encode()).hexdigest()[:2]


def shard_name(index: int) -> str:
    return f"shard-{index:03d}"


@lru_cache(maxsize=4096)
def _task_dir(root: Path, task_id: str) -> Path:
    """Cached: a worker asks for the same task's paths a dozen times while running it."""
    check_safe_id(task_id, "task_id")
    return root / "tasks" / bucket_of(task_id) / task_id


@dataclass(frozen=True)
class RunLayout:
    """Paths only, never state: the fixed folders are joined once per layout (cached_property), as a
    worker asks for them several times per task."""

    root: Path

    @property
    def run_json(self) -> Path:
        """The current version of the run record (`run.<generation>.json`, see store/versioned.py)."""
        return versioned.current_path(self.root, "run")

    @property
    def run_lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def manifest(self) -> Path:
        """One line per task (store/manifest.py); schema-1 runs had `manifest_v1` instead."""
        return self.root / "manifest.tsv"

    @property
    def manifest_v1(self) -> Path:
        return self.root / "manifest.json"

    @property
    def aliases(self) -> Path:
        return self.root / "aliases.jsonl"

    @property
    def manifest_lock(self) -> Path:
        """Held only while a stager merges its tasks into manifest.json (milliseconds)."""
        return self.root / "locks" / "manifest.lock"

    @cached_property
    def tasks_dir(self) -> Path:
        return self.root / "tasks"

    def task_dir(self, task_id: str) -> Path:
        return _task_dir(self.root, task_id)

    def _checked_bucket(self, task_id: str) -> str:
        """The id's bucket, after the same (cached) safety check as its task folder."""
        return self.task_dir(task_id).parent.name

    def spec(self, task_id: str) -> Path:
        return self.task_dir(task_id) / "spec.json"

    def state(self, task_id: str) -> Path:
        """The current version of the task's state (`state.<generation>.json`, see store/versioned.py)."""
        return versioned.current_path(self.task_dir(task_id), "state")

    def state_lock(self, task_id: str) -> Path:
        """One lock per bucket, not per task: creating a lock file per task cost as much as a
        state write, and critical sections last well under a millisecond."""
        return self.root / "locks" / f"{bucket_of(task_id)}.lock"

    def attempts_dir(self, task_id: str) -> Path:
        """Made at staging (run schema 2), so a worker's first attempt costs one mkdir."""
        return self.task_dir(task_id) / "attempts"

    def attempt_dir(self, task_id: str, attempt_index: int) -> Path:
        return self.attempts_dir(task_id) / str(attempt_index)

    def result(self, task_id: str, attempt_index: int) -> Path:
        return self.attempt_dir(task_id, attempt_index) / "result.json"

    @cached_property
    def pending_dir(self) -> Path:
        return self.root / "queue" / "pending"

    def pending_shard_dir(self, shard: str) -> Path:
        return self.pending_dir / shard

    def pending_token(self, shard: str, task_id: str) -> Path:
        check_safe_id(shard, "shard")
        return self.pending_dir / shard / self._checked_bucket(task_id) / task_id

    @cached_property
    def ended_dir(self) -> Path:
        return self.root / "queue" / "ended"

    def ended_token(self, state: str, task_id: str) -> Path:
        """Marks a task that ended without COMPLETED, so `status` can count states without
        reading every state file (completed = staged - pending - in flight - ended)."""
        return self.ended_dir / state / self._checked_bucket(task_id) / task_id

    @cached_property
    def inflight_dir(self) -> Path:
        return self.root / "queue" / "inflight"

    def inflight_token(self, task_id: str) -> Path:
        self._checked_bucket(task_id)
        return self.inflight_dir / task_id

    @cached_property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    def shard_record(self, shard: str) -> Path:
        return self.shards_dir / f"{shard}.json"

    @cached_property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def summary(self) -> Path:
        """The run-level results (counts, cost, what else was written): written last by ingestion."""
        return self.results_dir / "summary.json"

    @property
    def records(self) -> Path:
        """One JSON line per owner (reporting/records_io.py)."""
        return self.results_dir / "records.jsonl"

    @property
    def failed_records(self) -> Path:
        return self.results_dir / "failed.jsonl"

    @property
    def records_v1(self) -> Path:
        """What schema-1 ingestion wrote (everything in one document)."""
        return self.results_dir / "records.json"

    @cached_property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def iter_task_ids(self, with_bucket: bool = False):
        """Every staged task id, from the folders (used by reconcile/status, never by claims), bucket
        by bucket in sorted order; `with_bucket`: (bucket, task id). Folder types come from the
        listing (scandir), not from a stat per task."""
        try:
            buckets = sorted(e.name for e in os.scandir(self.tasks_dir) if e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return
        for bucket in buckets:
            try:
                with os.scandir(self.tasks_dir / bucket) as entries:
                    names = sorted(e.name for e in entries if e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                yield (bucket, name) if with_bucket else name
