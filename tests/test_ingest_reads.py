"""Ingestion's two shortcuts, and that both stay exact (issue 13: 27 metadata calls per task -> ~10).

1. A whole-run reconcile lists each bucket's queue folders once and probes only the tokens it found
   (store/token_snapshot.py), instead of unlinking every name a token of an ended task could have.
2. Ingestion opens each ended task's state by the name the reconcile just read it at
   (store/final_versions.py), instead of listing the task's folder again.
"""

from __future__ import annotations

import os

import pytest

from pipe_rules.execution.worker import run_worker
from pipe_rules.reporting.ingest import ingest
from pipe_rules.store import lifecycle, token_snapshot, versioned
from pipe_rules.store.claims import TaskPicker
from pipe_rules.store.final_versions import FinalVersions
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import cancel
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.records_io import load_records
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TaskState as S
from pipe_rules.store.taskstate import read_state


@pytest.fixture
def ended_run(staged_run, monkeypatch) -> tuple[RunLayout, list[str]]:
    """Six tasks: the first cancelled before any worker ran, the other five COMPLETED. Reconcile
    lists every token folder (as it does when a bucket holds enough tasks for that to pay)."""
    monkeypatch.setattr(token_snapshot, "HITS_TO_LIST", 0)
    layout = staged_run(6, shards=1, linger_s=0)
    ids = sorted(manifest_task_ids(layout))
    assert cancel(layout, ids[0], read_run(layout).lock_mode)
    run_worker(layout.root, install_signals=False)
    assert [read_state(layout, t).status for t in ids] == [S.CANCELLED] + [S.COMPLETED] * 5
    return layout, ids


def _records(layout: RunLayout) -> dict:
    records = load_records(layout)
    return {"owners": records["owners"], "failed": records["failed"], "counts": records["task_counts"]}


def _no_listing_of_states(monkeypatch) -> list[str]:
    """Make every listing-based read of a task state fail the test; returns the folders it was asked for."""
    asked: list[str] = []
    real = versioned.read_bytes

    def read_bytes(folder, stem):
        if stem == "state":
            asked.append(str(folder))
        return real(folder, stem)

    monkeypatch.setattr(versioned, "read_bytes", read_bytes)
    return asked


def test_ingestion_opens_each_ended_state_by_the_name_reconcile_read_and_writes_the_same_records(ended_run,
                                                                                                monkeypatch):
    layout, ids = ended_run
    ingest(layout)
    plain = _records(layout)
    final = FinalVersions(layout)
    reconcile(layout, final=final)
    asked = _no_listing_of_states(monkeypatch)
    ingest(layout, reconciled=True, final=final)
    assert asked == [], f"ingestion listed the state folders of {len(asked)} ended tasks again"
    assert _records(layout) == plain
    assert plain["counts"] == {"CANCELLED": 1, "COMPLETED": 5}


def test_ingestion_reads_afresh_when_the_manifest_changed_after_the_reconcile(ended_run, monkeypatch):
    """The notes are positions in the owner index the reconcile loaded; a changed manifest gives
    another index, so every state is read by listing again, never at another task's position."""
    layout, ids = ended_run
    final = FinalVersions(layout)
    reconcile(layout, final=final)
    assert final.noted()[0] is not None  # the notes are placed in the index of this manifest now
    info = os.stat(layout.manifest)
    os.utime(layout.manifest, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    asked = _no_listing_of_states(monkeypatch)
    ingest(layout, reconciled=True, final=final)
    assert len(asked) == len(ids)
    assert _records(layout)["counts"] == {"CANCELLED": 1, "COMPLETED": 5}


def test_a_noted_version_that_is_gone_is_read_by_listing(ended_run):
    """Only a broken run loses a terminal version, but the note is then no reason to fail: the
    state is looked up as before (here moved to the next generation by hand)."""
    layout, ids = ended_run
    final = FinalVersions(layout)
    reconcile(layout, final=final)
    folder = layout.task_dir(ids[1])
    generation = versioned.current(folder, "state")
    os.rename(versioned.path_of(folder, "state", generation), versioned.path_of(folder, "state", generation + 1))
    ingest(layout, reconciled=True, final=final)
    assert _records(layout)["counts"] == {"CANCELLED": 1, "COMPLETED": 5}


def test_reconcile_removes_the_stray_tokens_of_ended_tasks_and_makes_their_missing_markers(ended_run):
    layout, ids = ended_run
    cancelled, done = ids[0], ids[1]
    os.remove(layout.ended_token(S.CANCELLED.value, cancelled))
    strays = [layout.pending_token("shard-000", done), layout.inflight_token(done),
              layout.ended_token(S.FAILED_ESS.value, done), layout.pending_token("shard-000", cancelled)]
    for path in strays:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    reconcile(layout)
    assert [p for p in strays if p.exists()] == []
    assert layout.ended_token(S.CANCELLED.value, cancelled).exists()


def test_reconcile_of_a_clean_ended_run_unlinks_and_creates_no_token(ended_run, monkeypatch):
    """Before: five unlinks per COMPLETED task (every name a token of it could have), the largest
    part of ingestion's 27 metadata calls per task."""
    layout, _ = ended_run
    calls: list[str] = []
    for name in ("remove_if_present", "_touch", "_move"):
        real = getattr(lifecycle, name)
        monkeypatch.setattr(lifecycle, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    reconcile(layout)
    assert calls == []


def test_a_stray_token_made_after_its_bucket_was_listed_is_removed_by_the_next_claim(ended_run, monkeypatch):
    """A stale reader (it read the task PENDING before the task ran) may make a pending token of a
    COMPLETED task after reconcile listed that bucket. Reconcile then leaves it (it believes it
    absent); a worker that takes it finds the task ended and removes it: the task stays COMPLETED
    and no token is left."""
    layout, ids = ended_run
    done = ids[1]
    stray = layout.pending_token("shard-000", done)
    real_enter = token_snapshot.TokenSnapshot.enter

    def enter_then_stray(self, bucket):
        real_enter(self, bucket)
        if bucket == layout.task_dir(done).parent.name and not stray.exists():
            stray.parent.mkdir(parents=True, exist_ok=True)
            stray.touch()  # right after the listing, before the state is read

    monkeypatch.setattr(token_snapshot.TokenSnapshot, "enter", enter_then_stray)
    reconcile(layout)
    monkeypatch.undo()
    assert stray.exists(), "the stray was not made inside the window (the test did not test anything)"
    picker = TaskPicker(layout, "shard-000", read_run(layout).lock_mode, "B", 30.0)
    assert picker.next_claim() is None
    assert not stray.exists() and not layout.inflight_token(done).exists()
    assert read_state(layout, done).status is S.COMPLETED
