"""The ledgers' summary that `status` keeps (store/ledger_summary.py): cached, extended from each
ledger's last read position, and started again when a ledger shrank, was rewritten or replaced;
its counts always equal a reading of the ledgers from scratch."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

import pipe_rules.store.ledger_summary as summary_module
from pipe_rules.reporting.status import run_status
from pipe_rules.store.ledger import ledger_dir
from pipe_rules.store.ledger_summary import CACHE, LedgerSummary
from pipe_rules.store.manifest import iter_entries
from pipe_rules.store.owner_index import load_owner_index


def line(task_id: str, outcome: str = "COMPLETED", wall: float = 2.0, peak: float = 30.0) -> str:
    return f"{task_id}\t0\t2\t{wall!r}\t1.0\t{peak:.3f}\t{outcome}\n"


@pytest.fixture
def run(staged_run, monkeypatch):
    """12 staged tasks (owners of one task each), the status of the ledger path (no token listing)."""
    import pipe_rules.reporting.status as status

    monkeypatch.setattr(status, "LIST_PENDING_BELOW", 0)
    layout = staged_run(12)
    ledger_dir(layout.root).mkdir(exist_ok=True)
    entries = list(iter_entries(layout))
    return SimpleNamespace(layout=layout, ids=[e.task_id for e in entries], owner={e.task_id: e.owner for e in entries})


def fresh(layout):
    """What the ledgers say read from their first byte, with no cache."""
    return LedgerSummary(layout.root, cache=False).refresh(load_owner_index(layout))


def cached(layout):
    return LedgerSummary(layout.root).refresh(load_owner_index(layout))


def same(a: LedgerSummary, b: LedgerSummary) -> bool:
    return ((a.done == b.done).all() and a.cost == pytest.approx(b.cost) and a.totals == pytest.approx(b.totals)
            and (a.unknown_done, a.unknown_outcomes) == (b.unknown_done, b.unknown_outcomes))


def done(layout) -> int:
    return run_status(layout).counts["COMPLETED"]


def parsed_bytes(monkeypatch) -> list[int]:
    """Bytes handed to the parser from now on."""
    seen: list[int] = []
    real = summary_module.parse_lines
    monkeypatch.setattr(summary_module, "parse_lines", lambda data: seen.append(len(data)) or real(data))
    return seen


def test_an_appended_ledger_is_read_from_where_the_cache_stopped(run, monkeypatch):
    path = ledger_dir(run.layout.root) / "w-a.tsv"
    path.write_text("".join(line(t) for t in run.ids[:3]))
    assert done(run.layout) == 3 and (ledger_dir(run.layout.root) / CACHE).is_file()
    extra = line(run.ids[3]) + line(run.ids[4], "FAILED_ESS", wall=7.0) + line(run.ids[0], wall=1.0)  # a retry
    with open(path, "a") as handle:
        handle.write(extra)
    seen = parsed_bytes(monkeypatch)
    status = run_status(run.layout, owners=True)
    assert seen == [len(extra)]  # only what was appended
    assert status.counts["COMPLETED"] == 4 and status.cost.attempts == 6
    assert status.cost.cpu_hours == pytest.approx(2 * (2.0 * 4 + 7.0 + 1.0) / 3600)
    owner0 = status.owners[run.owner[run.ids[0]]]
    assert owner0.done == 1 and owner0.cost.attempts == 2 and owner0.cost.task_wall_s == pytest.approx(3.0)
    assert status.owners[run.owner[run.ids[4]]].pending == 1  # a failed attempt leaves its task pending
    seen.clear()
    assert done(run.layout) == 4 and seen == []  # nothing moved: nothing read
    assert same(cached(run.layout), fresh(run.layout))


def test_ingestion_leaves_every_line_read_for_the_next_status(run, monkeypatch):
    """The first `status` after ingestion parses no ledger byte: ingestion brought the cache up to date."""
    from pipe_rules.reporting.ingest import ingest

    (ledger_dir(run.layout.root) / "w-a.tsv").write_text("".join(line(t) for t in run.ids[:5]))
    assert not (ledger_dir(run.layout.root) / CACHE).exists()
    ingest(run.layout)
    seen = parsed_bytes(monkeypatch)
    assert done(run.layout) == 5 and seen == []


def test_a_ledger_with_a_64_bit_inode_number_is_cached(run, monkeypatch):
    """GlusterFS gives files inode numbers above 2**63: the cache keeps them (as int64 they overflowed:
    ingestion crashed at the end of the GlusterFS storms, and so would status), and the next call,
    finding the same inode, reads nothing."""
    path = ledger_dir(run.layout.root) / "w-a.tsv"
    path.write_text("".join(line(t) for t in run.ids[:2]))
    real_stat = os.stat

    def gluster_stat(target, *args, **kwargs):
        info = real_stat(target, *args, **kwargs)
        if str(target) != str(path):
            return info
        return SimpleNamespace(st_ino=2**64 - 7, st_size=info.st_size, st_mtime_ns=info.st_mtime_ns)

    monkeypatch.setattr(summary_module.os, "stat", gluster_stat)
    assert done(run.layout) == 2 and (ledger_dir(run.layout.root) / CACHE).is_file()
    seen = parsed_bytes(monkeypatch)
    assert cached(run.layout).done.sum() == 2 and seen == []  # loaded from the cache: same inode, nothing new


def test_the_cache_holds_no_line_of_the_ledgers(run):
    """Memory and the cache do not grow with the lines read: one flag per task, five sums per owner."""
    path = ledger_dir(run.layout.root) / "w-a.tsv"
    path.write_text(line(run.ids[0]))
    done(run.layout)
    small = os.path.getsize(ledger_dir(run.layout.root) / CACHE)
    path.write_text("".join(line(run.ids[k % 11], wall=float(k)) for k in range(20_000)))
    assert done(run.layout) == 11  # (all 12 done would list the tokens instead)
    assert os.path.getsize(ledger_dir(run.layout.root) / CACHE) == small


def test_a_truncated_ledger_is_read_again_from_its_start(run):
    path = ledger_dir(run.layout.root) / "w-a.tsv"
    path.write_text("".join(line(t) for t in run.ids[:5]))
    assert done(run.layout) == 5
    with open(path, "r+") as handle:
        handle.truncate(len(line(run.ids[0])) * 2)
    assert done(run.layout) == 2
    assert same(cached(run.layout), fresh(run.layout))


def test_a_rewritten_ledger_is_read_again_from_its_start(run):
    """Rewritten in place (same inode, longer, other lines) or replaced by another file: the bytes
    before the cached position differ, or the inode does, so nothing of the old lines is kept."""
    path = ledger_dir(run.layout.root) / "w-a.tsv"
    path.write_text("".join(line(t) for t in run.ids[:4]))
    assert done(run.layout) == 4
    with open(path, "r+") as handle:  # same inode, other tasks, longer
        handle.write("".join(line(t) for t in run.ids[6:11]))
    assert done(run.layout) == 5
    assert run_status(run.layout, owners=True).owners[run.owner[run.ids[0]]].done == 0
    other = path.with_name("w-a.tsv.new")
    other.write_text("".join(line(t, wall=5.0) for t in run.ids[:8]))  # another file, longer still
    os.replace(other, path)
    status = run_status(run.layout, owners=True)
    assert status.counts["COMPLETED"] == 8 and status.cost.task_wall_s == pytest.approx(40.0)
    path.unlink()
    assert done(run.layout) == 0  # a ledger that went takes its lines with it
    assert same(cached(run.layout), fresh(run.layout))


def test_a_killed_workers_half_written_last_line_counts_once_whole(run, monkeypatch):
    killed = ledger_dir(run.layout.root) / "w-killed.tsv"
    whole = "".join(line(t) for t in run.ids[:3])
    killed.write_text(whole + line(run.ids[3])[:9])  # killed in the middle of its write
    live = ledger_dir(run.layout.root) / "w-live.tsv"
    live.write_text(line(run.ids[5]))
    assert done(run.layout) == 4
    seen = parsed_bytes(monkeypatch)
    with open(live, "a") as handle:
        handle.write(line(run.ids[6]))
    assert done(run.layout) == 5 and seen == [len(line(run.ids[6]))]  # the killed one's half line is not re-read
    with open(killed, "a") as handle:  # had the write gone on, the line counts once whole
        handle.write(line(run.ids[3])[9:])
    assert done(run.layout) == 6
    assert same(cached(run.layout), fresh(run.layout))


def test_a_new_manifest_starts_the_summary_again(run):
    """Positions in the cache are the owner index's: an index built from another manifest cannot use them."""
    (ledger_dir(run.layout.root) / "w-a.tsv").write_text("".join(line(t) for t in run.ids[:3]))
    before = cached(run.layout)
    with open(run.layout.manifest, "a") as handle:  # a later staging appends tasks: the index changes
        handle.write(f"zz_new_task\tshard-000\t{'0' * 64}\t\"zz_owner\"\n")
    after = cached(run.layout)
    assert len(after.done) == len(before.done) + 1 and int(after.done.sum()) == 3
    assert same(after, fresh(run.layout))
