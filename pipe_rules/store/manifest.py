"""The run's manifest: every task id with its shard, fingerprint and owner, and the aliases of
deduplicated inputs; read as a stream, so a run of 1,000,000 tasks never sits in memory.

`manifest.tsv` holds one line per task, `task_id<TAB>shard<TAB>fingerprint<TAB>owner` (the owner
JSON-quoted: labels may hold any character); `aliases.jsonl` one JSON object per merged input.
Stagers append under `locks/manifest.lock`, each only the tasks whose state it created, so two
stagers never list one task twice; readers still keep the first line of an id (a stager killed
between its state writes and its append is repaired by the next staging, which may re-list).
Runs of schema 1 kept everything in one `manifest.json`: read as before, and converted to the
two files the first time such a run is staged again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import open_or_create, read_json
from pipe_rules.store.layout import RunLayout

HINT = "; restage the campaign to rewrite it"
TRUNCATED = "; remove that line (or the whole file: staging the campaign again lists every staged task again)"


@dataclass(frozen=True)
class Entry:
    task_id: str
    shard: str
    fingerprint: str
    owner: str


def _v1(layout: RunLayout) -> dict | None:
    """A schema-1 manifest.json, checked, or None when there is none."""
    if not layout.manifest_v1.exists():
        return None
    data = read_json(layout.manifest_v1, "run manifest", HINT)
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise StateError("run manifest has no 'tasks' list", path=layout.manifest_v1, field="tasks")
    for index, entry in enumerate(data["tasks"]):
        if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, str) for v in entry)):
            raise StateError(f"entry {entry!r} is not [task_id, shard, fingerprint]", path=layout.manifest_v1,
                             field=f"tasks.{index}")
    if not isinstance(data.get("aliases", {}), dict):
        raise StateError("'aliases' is not a mapping", path=layout.manifest_v1, field="aliases")
    return data


def _v1_owner(layout: RunLayout, task_id: str) -> str:
    try:
        spec = read_json(layout.spec(task_id), "task spec")
        return str(spec["owner_key"])
    except (StateError, KeyError, TypeError):
        return ""


def _lines(path, strict: bool) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) of an append-only file; a missing file has none. A
    last line without its newline is one a stager is appending right now (the reading stops there),
    or, `strict`, a truncated file (an error)."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.endswith("\n"):
                if strict:
                    raise StateError(f"line {number} is incomplete (a truncated file){TRUNCATED}", path=path,
                                     field=f"line {number}")
                return
            yield number, line[:-1]


def iter_entries(layout: RunLayout, strict: bool = True) -> Iterator[Entry]:
    """Every task of the run in staging order (stagers never list a task twice). `strict`: a last
    line without its newline is an error (a truncated file); without, it is skipped as the line a
    stager is appending right now (what a reader during staging, such as `status`, may meet)."""
    old = _v1(layout) if not layout.manifest.exists() else None
    if old is not None:
        for task_id, shard, fingerprint in old["tasks"]:
            yield Entry(task_id, shard, fingerprint, _v1_owner(layout, task_id))
        return
    for number, line in _lines(layout.manifest, strict):
        try:
            task_id, shard, fingerprint, owner = line.split("\t")
            owner = json.loads(owner)
            bytes.fromhex(fingerprint)
        except ValueError:
            raise StateError(f"line {number} is not task_id, shard, fingerprint, owner{TRUNCATED}",
                             path=layout.manifest, field=f"line {number}") from None
        yield Entry(task_id, shard, fingerprint, owner)


def iter_aliases(layout: RunLayout) -> Iterator[tuple[str, dict]]:
    """(alias id, {"of", "owner_key", "ingestion_metadata"}) of every merged input, first one kept."""
    old = _v1(layout) if not layout.manifest.exists() else None
    if old is not None:
        yield from old.get("aliases", {}).items()
        return
    seen: set[str] = set()
    for number, line in _lines(layout.aliases, strict=False):
        try:
            item = json.loads(line)
            alias = {"of": item["of"], "owner_key": item["owner_key"], "ingestion_metadata": item["ingestion_metadata"]}
            alias_id = item["task_id"]
        except (ValueError, KeyError, TypeError):
            raise StateError(f"line {number} is not an alias record{HINT}", path=layout.aliases,
                             field=f"line {number}") from None
        if alias_id not in seen:
            seen.add(alias_id)
            yield alias_id, alias


def read_manifest(layout: RunLayout) -> dict:
    """The whole manifest in memory ({"tasks": [[id, shard, fingerprint]], "aliases": {...}}):
    for small runs and tests; everything that scales uses the iterators."""
    return {"tasks": [[e.task_id, e.shard, e.fingerprint] for e in iter_entries(layout)],
            "aliases": dict(iter_aliases(layout))}


def manifest_task_ids(layout: RunLayout) -> list[str]:
    return [e.task_id for e in iter_entries(layout)]


def shard_of(layout: RunLayout, task_id: str) -> str | None:
    """One task's shard, by reading the manifest (only reconcile's rebuild of a corrupt state asks)."""
    try:
        return next((e.shard for e in iter_entries(layout) if e.task_id == task_id), None)
    except StateError:
        return None


def check_whole(layout: RunLayout, n_tasks: int) -> int:
    """Read the whole manifest strictly (what ingestion does first); it must list every task run.json
    counts. Returns how many it lists."""
    listed = sum(1 for _ in iter_entries(layout))
    if listed < n_tasks:
        path = layout.manifest if layout.manifest.exists() or not layout.manifest_v1.exists() else layout.manifest_v1
        raise StateError(f"lists {listed} of the run's {n_tasks} tasks{HINT}", path=path)
    return listed


def entry_line(entry: Entry) -> str:
    return f"{entry.task_id}\t{entry.shard}\t{entry.fingerprint}\t{json.dumps(entry.owner)}\n"


def _append(path, lines: Iterable[str]) -> None:
    text = "".join(lines)
    if not text:
        return
    fd = open_or_create(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def append_entries(layout: RunLayout, entries: Iterable[Entry], aliases: Iterable[tuple[str, dict]] = ()) -> None:
    """Append tasks and aliases; the caller holds the manifest lock."""
    _append(layout.aliases, (json.dumps({"task_id": a, **alias}, separators=(",", ":")) + "\n"
                             for a, alias in aliases))
    _append(layout.manifest, (entry_line(e) for e in entries))


def migrate_v1(layout: RunLayout) -> bool:
    """Write a schema-1 run's manifest.json as manifest.tsv + aliases.jsonl (owners read from the
    specs), then set the old file aside; the caller holds the manifest lock. True if it did."""
    if layout.manifest.exists():
        return False
    old = _v1(layout)
    if old is None:
        return False
    tmp = layout.manifest.with_name(f".{layout.manifest.name}.{os.getpid()}.migrating")
    with open(tmp, "w", encoding="utf-8") as handle:
        for task_id, shard, fingerprint in old["tasks"]:
            handle.write(entry_line(Entry(task_id, shard, fingerprint, _v1_owner(layout, task_id))))
    if old.get("aliases"):
        _append(layout.aliases, (json.dumps({"task_id": a, **alias}, separators=(",", ":")) + "\n"
                                 for a, alias in old["aliases"].items()))
    os.replace(tmp, layout.manifest)
    os.replace(layout.manifest_v1, layout.manifest_v1.with_name("manifest.json.v1"))
    return True
