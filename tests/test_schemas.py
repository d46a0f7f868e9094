"""The JSON schemas other programs read are generated from the models that validate the files: the
files in pipe_rules/contracts/schemas must be what the models generate, be valid JSON Schema, and
accept the real files pipe_rules writes (and refuse what the models refuse)."""

from __future__ import annotations

import json

import pytest
from conftest import pipe_rules_cli
from jsonschema import Draft202012Validator

from pipe_rules.cli.schema_files import SCHEMAS, folder, render
from pipe_rules.execution.worker import run_worker
from pipe_rules.contracts.errors import StateError
from pipe_rules.store import versioned
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.taskstate import read_state


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_schema_file_is_what_its_model_generates(name):
    path = folder() / f"{name}.schema.json"
    assert path.read_text(encoding="utf-8") == render(name), f"{path} is stale: run `pipe-rules schemas --update`"
    Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_schemas_command_reports_every_file_up_to_date():
    proc = pipe_rules_cli("schemas", check=True)
    assert proc.stdout.count(": up to date") == len(SCHEMAS)


def test_real_files_match_the_generated_schemas_and_an_unknown_field_does_not(staged_run):
    layout = staged_run(2)
    run_worker(layout.root, install_signals=False, linger=False)
    validators = {name: Draft202012Validator(json.loads((folder() / f"{name}.schema.json").read_text()))
                  for name in SCHEMAS}
    run = json.loads(versioned.current_path(layout.root, "run").read_text())
    assert not list(validators["run"].iter_errors(run))
    assert list(validators["run"].iter_errors({**run, "colour": "blue"}))
    assert list(validators["run"].iter_errors({**run, "state": "DONE"}))
    for task_id in manifest_task_ids(layout):
        spec = json.loads(layout.spec(task_id).read_text())
        result = json.loads(layout.result(task_id, 0).read_text())
        assert not list(validators["task_spec"].iter_errors(spec))
        assert not list(validators["result"].iter_errors(result))
        assert list(validators["task_spec"].iter_errors({**spec, "colour": "blue"}))
        assert list(validators["result"].iter_errors({**result, "colour": "blue"}))
        assert list(validators["result"].iter_errors({**result, "timings": {**result["timings"], "x": 1}}))
        state = json.loads(versioned.current_path(layout.task_dir(task_id), "state").read_text())
        assert state["status"] == "COMPLETED" and not list(validators["task_state"].iter_errors(state))
        assert list(validators["task_state"].iter_errors({**state, "colour": "blue"}))
        assert list(validators["task_state"].iter_errors({**state, "status": "DONE"}))


@pytest.mark.parametrize("change, line", [
    ({"colour": "blue"}, "field '(top level)': unknown field(s) ('colour' was unexpected)"),
    ({"status": "DONE"}, "field 'status': 'DONE' is not one of: PENDING, CLAIMED, RUNNING, COMPLETED, "),
    ({"attempt_index": "1"}, "field 'attempt_index': '1' is not of type 'integer'"),
    ({"ended_at": None}, "field 'ended_at': COMPLETED needs ended_at"),
])
def test_a_bad_task_state_is_one_line_naming_the_file_and_field(staged_run, change, line):
    layout = staged_run(1)
    run_worker(layout.root, install_signals=False, linger=False)
    task_id = manifest_task_ids(layout)[0]
    path = versioned.current_path(layout.task_dir(task_id), "state")
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(StateError) as caught:
        read_state(layout, task_id)
    assert str(caught.value).startswith(f"{path}: {line}")


@pytest.mark.parametrize("change, line", [
    ({"colour": "blue"}, "field '(top level)': unknown field(s) ('colour' was unexpected)"),
    ({"state": "DONE"}, "field 'state': 'DONE' is not one of: CREATED, STAGED, RUNNING, COMPLETED, "),
    ({"shards": 2.0}, "field 'shards': 2.0 is not of type 'integer'"),
    ({"lease_s": None}, "field 'lease_s': None is not of type 'number'"),
])
def test_a_bad_run_record_is_one_line_naming_the_file_and_field(staged_run, change, line):
    layout = staged_run(1)
    path = versioned.current_path(layout.root, "run")
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(StateError) as caught:
        read_run(layout)
    assert str(caught.value).startswith(f"{path}: {line}")
