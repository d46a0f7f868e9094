"""manifest.json: every task id of a run with its shard and fingerprint, and the aliases of
deduplicated inputs. Stagers merge into it under `locks/manifest.lock`; everything else reads it."""

from __future__ import annotations

from pipe_rules.contracts.errors import StateError
from pipe_rules.store.fsio import read_json
from pipe_rules.store.layout import RunLayout


def read_manifest(layout: RunLayout) -> dict:
    if not layout.manifest.exists():
        return {"tasks": [], "aliases": {}}
    data = read_json(layout.manifest, "run manifest", "; restage the campaign to rewrite it")
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise StateError("run manifest has no 'tasks' list", path=layout.manifest, field="tasks")
    for index, entry in enumerate(data["tasks"]):
        if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, str) for v in entry)):
            raise StateError(f"entry {entry!r} is not [task_id, shard, fingerprint]", path=layout.manifest,
                             field=f"tasks.{index}")
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict):
        raise StateError("'aliases' is not a mapping", path=layout.manifest, field="aliases")
    return {"tasks": data["tasks"], "aliases": aliases}


def merge_manifest(current: dict, ours: list[list[str]], aliases: dict) -> tuple[list, dict]:
    """What is on disk now, plus this stager's tasks it does not list yet (first writer wins)."""
    listed = {entry[0] for entry in current["tasks"]}
    entries = current["tasks"] + [entry for entry in ours if entry[0] not in listed]
    return entries, {**aliases, **current["aliases"]}


def manifest_task_ids(layout: RunLayout) -> list[str]:
    return [entry[0] for entry in read_manifest(layout)["tasks"]]
