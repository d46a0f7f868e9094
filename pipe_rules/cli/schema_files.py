"""The JSON schemas in pipe_rules/contracts/schemas/, generated from the models that validate the files.

Other programs (ARC, a results browser) read the schemas; pipe_rules itself validates with the
models, so the schemas are written from them and never edited by hand: `pipe-rules schemas --update`
rewrites them, and a test fails when a file and its model disagree.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pipe_rules.contracts.models import json_schema
from pipe_rules.contracts.result import ResultRecord
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.inputs.campaign import CampaignFile, config_schema
from pipe_rules.store.runrecord import RunRecord
from pipe_rules.store.taskstate import TaskStateRecord

# file stem -> (model, title, adjustment of the generated document)
SCHEMAS = {
    "config": (CampaignFile, "pipe_rules campaign config (config.yaml)", config_schema),
    "task_spec": (TaskSpec, "pipe_rules task spec", None),
    "result": (ResultRecord, "pipe_rules task attempt result (tasks/<bucket>/<task_id>/attempts/<n>/result.json)",
               None),
    "run": (RunRecord, "pipe_rules run record (<run>/run.<generation>.json)", None),
    "task_state": (TaskStateRecord, "pipe_rules task state (tasks/<bucket>/<task_id>/state.<generation>.json)", None),
}


def folder() -> Path:
    return Path(str(resources.files("pipe_rules.contracts").joinpath("schemas")))


def load(name: str) -> dict:
    """A schema file as other programs read it."""
    return json.loads((folder() / f"{name}.schema.json").read_text(encoding="utf-8"))


def render(name: str) -> str:
    model, title, adjust = SCHEMAS[name]
    document = json_schema(model, name, title)
    return json.dumps(adjust(document) if adjust else document, indent=2) + "\n"


def stale() -> list[Path]:
    """Schema files whose text is not what their model generates."""
    out = []
    for name in SCHEMAS:
        path = folder() / f"{name}.schema.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != render(name):
            out.append(path)
    return out


def update() -> list[Path]:
    """Rewrite the stale files; returns them."""
    changed = stale()
    for path in changed:
        path.write_text(render(path.name.removesuffix(".schema.json")), encoding="utf-8")
    return changed
