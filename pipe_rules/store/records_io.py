"""The ingested results on disk, written and read as streams: results/records.jsonl (one owner
record per line, sorted by owner), results/failed.jsonl (one task that did not complete per line)
and results/summary.json (the run-level part, written last: its presence means the other two are
whole). Lines are encoded with orjson; every line read is checked against contracts/records.py
and a bad one is reported as one line naming the file, the line and the field.

Schema 1 wrote one results/records.json; readers of such a run get one line saying to re-ingest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from pipe_rules.contracts.errors import StateError
from pipe_rules.contracts.models import problem
from pipe_rules.contracts.records import FailedTask, OwnerRecord, Summary
from pipe_rules.store.fsio import atomic_write_text, temp_name
from pipe_rules.store.layout import RunLayout

HINT = "; run 'pipe-rules ingest' on the run folder to write it again"
_OPTS = orjson.OPT_SERIALIZE_NUMPY


class RecordsWriter:
    """Streams owner and failed lines to temp files; `close` renames them into place and then writes
    summary.json, so a reader never sees half a set."""

    def __init__(self, layout: RunLayout):
        self.layout = layout
        layout.results_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = {path: temp_name(path)  # a killed ingestion's temp files are swept by `reconcile`
                     for path in (layout.records, layout.failed_records)}
        self._files = {path: open(tmp, "wb") for path, tmp in self._tmp.items()}
        self.n_owners = self.n_failed = 0

    def owner(self, record: dict[str, Any]) -> None:
        self._files[self.layout.records].write(orjson.dumps(record, option=_OPTS) + b"\n")
        self.n_owners += 1

    def failed(self, entry: dict[str, Any]) -> None:
        self._files[self.layout.failed_records].write(orjson.dumps(entry, option=_OPTS) + b"\n")
        self.n_failed += 1

    def close(self, summary: dict[str, Any]) -> dict[str, Any]:
        for handle in self._files.values():
            handle.close()
        for path, tmp in self._tmp.items():
            os.replace(tmp, path)
        summary = {**summary, "n_owners": self.n_owners, "n_failed": self.n_failed,
                   "records_file": self.layout.records.name, "failed_file": self.layout.failed_records.name}
        atomic_write_text(self.layout.summary, orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        return summary

    def abort(self) -> None:
        for handle in self._files.values():
            handle.close()
        for tmp in self._tmp.values():
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _bad(path: Path, what: str, field: str | None = None) -> StateError:
    return StateError(f"{what}{HINT}", path=path, field=field)


def read_summary(layout: RunLayout) -> dict[str, Any]:
    path = layout.summary
    if not path.exists():
        if layout.records_v1.exists():
            raise StateError("results written by an older pipe_rules (results/records.json, schema 1); run "
                             f"'pipe-rules ingest {layout.root}' to write them as records.jsonl + summary.json",
                             path=layout.records_v1)
        raise StateError("missing (run 'pipe-rules ingest' first)", path=path)
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise _bad(path, f"ingested results are corrupt or truncated ({exc})") from None
    found = problem(Summary, data)
    if found:
        raise _bad(path, found[1], found[0])
    return data


def _lines(path: Path, model, every: int = 1, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Checked records of a JSON Lines file: every `every`-th line, at most `limit` of them."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise _bad(path, "missing") from None
    taken = 0
    with handle:
        for number, line in enumerate(handle, 1):
            if limit is not None and taken >= limit:
                return
            if (number - 1) % every:
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise _bad(path, f"line {number} is not JSON ({exc})", f"line {number}") from None
            found = problem(model, data)
            if found:
                where = f"line {number}" if found[0] == "(top level)" else f"line {number}.{found[0]}"
                raise _bad(path, f"line {number}: {found[1]}", where)
            taken += 1
            yield data


def iter_owner_records(layout: RunLayout, every: int = 1, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Owner records in owner order (each with its `owner_key`); `every`: a sample of every n-th."""
    read_summary(layout)
    return _lines(layout.records, OwnerRecord, every, limit)


def iter_failed(layout: RunLayout, limit: int | None = None) -> Iterator[dict[str, Any]]:
    read_summary(layout)
    return _lines(layout.failed_records, FailedTask, 1, limit)


def read_owner_records(layout: RunLayout, what: str) -> tuple[str, Iterator[tuple[str, dict[str, Any]]]]:
    """(family, (owner key, record) stream) of an earlier run, for staging from_run."""
    try:
        summary = read_summary(layout)
    except StateError as exc:
        raise StateError(f"{what}: {exc.message}", path=exc.path, field=exc.field) from None
    return summary["family"], ((r["owner_key"], r) for r in iter_owner_records(layout))


def load_records(layout: RunLayout, max_owners: int | None = None, max_failed: int | None = None,
                 sample_owners: int | None = None, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary with `owners` ({key: record}) and `failed` (list) filled in: everything for small
    runs; for big ones the first `max_owners` / `max_failed`, or an even sample of `sample_owners`.
    `summary`: the one ingestion just wrote (Snakemake deletes a job's outputs, summary.json among
    them, before it runs the job, so a second Snakemake on the run may have removed the file since)."""
    summary = summary if summary is not None else read_summary(layout)
    every = max(1, summary["n_owners"] // sample_owners) if sample_owners else 1
    limit = sample_owners if sample_owners else max_owners
    owners = {r["owner_key"]: r for r in _lines(layout.records, OwnerRecord, every, limit)}
    failed = list(_lines(layout.failed_records, FailedTask, 1, max_failed))
    return {**summary, "owners": owners, "failed": failed}


def results_exist(layout: RunLayout) -> bool:
    return layout.summary.exists()
