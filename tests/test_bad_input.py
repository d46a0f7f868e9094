"""Bad input gets one clear line naming the file and field, a non-zero exit, and changes nothing."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import pipe_rules_cli, write_config

from pipe_rules.cli.main import main
from pipe_rules.contracts.errors import SpecError
from pipe_rules.execution.worker import run_worker
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import load_spec
from pipe_rules.store.taskstate import read_state


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def finished_run(tmp_path):
    """A staged and computed run whose files must survive every bad input below."""
    config = write_config(tmp_path, 3)
    pipe_rules_cli("stage", str(config), check=True)
    layout = RunLayout(tmp_path / "runs" / "test" / "main")
    run_worker(layout.root, install_signals=False)
    return config, layout


def _edit(config: Path, change) -> None:
    data = yaml.safe_load(config.read_text())
    change(data)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.mark.parametrize("change,expected", [
    (lambda d: d["runs"][0].update(family="conf_optt"),
     "config.yaml: field 'runs.0.family': 'conf_optt' is not one of: conf_opt, conf_sp, "),
    (lambda d: d["defaults"].update(engine="gaussian16"),
     "config.yaml: field 'runs.0.engine': unknown engine 'gaussian16'"),
    (lambda d: d["species"].append({"label": "bad", "smiles": "C1CC(("}),
     "config.yaml: field 'species.3.smiles': species 'bad': RDKit cannot parse SMILES 'C1CC(('"),
    (lambda d: d["defaults"].update(shards=0),
     "config.yaml: field 'defaults.shards': 0 is less than the minimum of 1"),
    (lambda d: d["runs"][0].update(family="species_freq"),
     "main/run.json: run was staged with a different family/engine/level/resources (family: 'species_sp' -> 'species_freq')"),
    (lambda d: d.update(colour="blue"),
     "config.yaml: field '(top level)': unknown field(s) ('colour' was unexpected)"),
    (lambda d: d["defaults"].update({"cores[2]": 4}),  # a key with brackets, like pydantic's own union tags
     "config.yaml: field 'defaults': unknown field(s) ('cores[2]' was unexpected)"),
])
def test_bad_config_is_one_line_and_changes_nothing(finished_run, change, expected):
    config, layout = finished_run
    before = tree_digest(layout.root)
    _edit(config, change)
    line = _one_line_error(pipe_rules_cli("stage", str(config)))
    assert line.startswith("pipe-rules: error: ")
    assert expected in re.sub(r"/run\.\d+\.json: ", "/run.json: ", line)  # names the run record's current version
    assert tree_digest(layout.root) == before


def test_yaml_syntax_error_names_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("campaign: x\nruns: [\n  - {name: a\n")
    line = _one_line_error(pipe_rules_cli("stage", str(config)))
    assert f"{config}: is not valid YAML at line" in line


@pytest.mark.parametrize("task_id", ["../escape", "a/b", "..", ".hidden", "x..y", ""])
def test_unsafe_task_ids_are_refused(task_id):
    with pytest.raises(SpecError, match="task_id .* is not allowed"):
        RunLayout(Path("/tmp/run")).task_dir(task_id)


def test_spec_with_unsafe_task_id_names_file_and_field(finished_run):
    _, layout = finished_run
    task_id = manifest_task_ids(layout)[0]
    path = layout.spec(task_id)
    data = json.loads(path.read_text())
    data["task_id"] = "../../etc"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: field 'task_id': task_id '../../etc' is not allowed")


def test_species_labels_cannot_escape_the_run_folder(tmp_path):
    species = [{"label": "../../outside", "xyz": "H 0 0 0\nH 0 0 0.74"}]
    config = write_config(tmp_path, species=species)
    pipe_rules_cli("stage", str(config), check=True)
    assert not (tmp_path / "outside").exists()
    layout = RunLayout(tmp_path / "runs" / "test" / "main")
    assert manifest_task_ids(layout) == ["outside_species_sp"]


def test_corrupt_state_is_reported_and_repaired_without_losing_results(finished_run):
    _, layout = finished_run
    task_id = manifest_task_ids(layout)[0]
    layout.state(task_id).write_text('{"status": "COMPL')
    status = pipe_rules_cli("status", str(layout.root), "--exact")
    assert f"unreadable: {layout.state(task_id)}: task state is corrupt or truncated" in status.stderr
    repaired = pipe_rules_cli("reconcile", str(layout.root))
    assert repaired.returncode == 0 and "repaired 1" in repaired.stdout
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index) == (TaskState.COMPLETED, 0)


def test_edited_spec_is_never_executed(tmp_path):
    config = write_config(tmp_path, 1)
    pipe_rules_cli("stage", str(config), check=True)
    layout = RunLayout(tmp_path / "runs" / "test" / "main")
    task_id = manifest_task_ids(layout)[0]
    data = json.loads(layout.spec(task_id).read_text())
    data["input_payload"]["charge"] = 5
    layout.spec(task_id).write_text(json.dumps(data))
    run_worker(layout.root, install_signals=False)
    state = read_state(layout, task_id)
    assert state.status is TaskState.FAILED_TERMINAL
    assert state.failure_reason == "invalid_spec"


def test_work_with_a_record_in_a_missing_folder_stops_before_any_work(finished_run, tmp_path):
    """Refused up front: a summary that cannot be written would fail the shard job after its work."""
    config, layout = finished_run
    _edit(config, lambda d: d["runs"].append({"name": "more", "family": "species_sp"}))
    pipe_rules_cli("stage", str(config), "--run", "more", check=True)
    more = layout.root.parent / "more"
    before = tree_digest(more)
    record = tmp_path / "missing" / "dir" / "s.json"
    line = _one_line_error(pipe_rules_cli("work", str(more), "--record", str(record)))
    assert line == (f"pipe-rules: error: {record}: field '--record': folder '{record.parent}' does not exist; "
                    "create it or give another path")
    assert tree_digest(more) == before  # no task was claimed


def test_config_reference_update_of_a_missing_file_is_one_line(tmp_path):
    line = _one_line_error(pipe_rules_cli("config-reference", "--update", "missing.md", cwd=tmp_path))
    assert line == "pipe-rules: error: missing.md: No such file or directory"


SUMMARY_DAMAGE = [  # (what is done to an ingested results/summary.json, the field the line must name)
    (lambda r: r.pop("family"), "family"),
    (lambda r: r.pop("run_id"), "run_id"),
    (lambda r: r.update(task_counts=[]), "task_counts"),
]


def _main_line(capsys, *argv: str) -> str:
    """cli.main in this process (what `pipe-rules` runs): exit code 2 and one line on stderr."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_results_and_report_on_a_summary_that_lacks_its_keys(finished_run, capsys):
    """The run-level keys (family, run_id...) live in summary.json; the owner and failed lines are
    checked line by line in test_streams.py."""
    _, layout = finished_run
    assert main(["ingest", str(layout.root)]) == 0
    pristine = layout.summary.read_text()
    for damage, field in SUMMARY_DAMAGE:
        summary = json.loads(pristine)
        damage(summary)
        layout.summary.write_text(json.dumps(summary))
        for command in ("results", "report"):
            line = _main_line(capsys, command, str(layout.root))
            assert line.startswith(f"pipe-rules: error: {layout.summary}: field '{field}"), (command, line)
            assert line.endswith("run 'pipe-rules ingest' on the run folder to write it again"), line
