"""Property-based tests (hypothesis): the task state machine under random operation sequences, config
and spec parsing under random input, and the security boundaries of a run folder."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, REPO, pipe_rules_cli, write_config
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from pipe_rules.contracts.errors import ConfigError, OwnershipLost, PipeRulesError, SpecError
from pipe_rules.contracts.ids import check_safe_id
from pipe_rules.contracts.spec import FAMILIES, TaskSpec
from pipe_rules.execution.execute import execute
from pipe_rules.inputs.run_settings import RUN_SETTINGS
from pipe_rules.inputs.config import load_campaign, parse_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.reporting.status import run_status
from pipe_rules.store.claims import TaskPicker
from pipe_rules.store.fsio import remove_if_present
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import (
    cancel,
    claim_and_start,
    finish,
    orphan_if_expired,
    release,
    renew_lease,
)
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.reconcile import reconcile
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import TASK_TRANSITIONS, TERMINAL_TASK_STATES, TaskState
from pipe_rules.store.task_files import load_spec, read_result, write_result
from pipe_rules.store.taskstate import read_state

S = TaskState
FAST_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


# ---------------------------------------------------------------------------------------------
# 6a. The task state machine under random operation sequences


class TaskLifecycleMachine(RuleBasedStateMachine):
    """Claims, outcomes, orphaning at random clock offsets, cancels, renewals, dead workers' results
    and full reconciles, in any order, on a real staged run of three tasks (max_attempts 2)."""

    template: Path  # a staged run, copied for every example (set by the test)
    workdir: Path

    claims = Bundle("claims")

    def __init__(self):
        super().__init__()
        root = Path(tempfile.mkdtemp(dir=self.workdir)) / "run"
        shutil.copytree(self.template, root)
        self.layout = RunLayout(root)
        self.run = read_run(self.layout)
        self.ids = manifest_task_ids(self.layout)
        self.seen = {task_id: read_state(self.layout, task_id) for task_id in self.ids}

    # -- operations

    @rule(target=claims, shard=st.sampled_from([None, "shard-000", "shard-001"]))
    def claim_next(self, shard):
        claim = TaskPicker(self.layout, shard, "flock", f"worker-{shard}", self.run.lease_s).next_claim()
        return multiple(claim) if claim else multiple()

    @rule(target=claims, index=st.integers(0, 2))
    def claim_this(self, index):
        """Take one task's token and CAS it, whatever its state (a retried or confused claim)."""
        task_id = self.ids[index]
        remove_if_present(self.layout.pending_token(read_state(self.layout, task_id).shard, task_id))
        claim = claim_and_start(self.layout, task_id, "flock", f"direct-{index}", self.run.lease_s)
        return multiple(claim) if claim else multiple()

    def _unchanged_if_lost(self, claim, action) -> None:
        before = self.layout.state(claim.task_id).read_bytes()
        try:
            action()
        except OwnershipLost:
            assert self.layout.state(claim.task_id).read_bytes() == before, "a stale owner changed the state"

    # A worker reports once (consumes); stale claims still come from orphan, cancel and renew.
    @rule(claim=consumes(claims), outcome=st.sampled_from([S.COMPLETED, S.FAILED_ESS, S.FAILED_RETRYABLE, S.FAILED_TERMINAL]))
    def report(self, claim, outcome):
        failure = {S.COMPLETED: (None, None), S.FAILED_ESS: ("ess", "scf"), S.FAILED_RETRYABLE: ("transient", "io"),
                   S.FAILED_TERMINAL: ("terminal", "invalid_spec")}[outcome]
        self._unchanged_if_lost(claim, lambda: finish(self.layout, claim, "flock", outcome, *failure))

    @rule(claim=consumes(claims))
    def hand_back(self, claim):
        self._unchanged_if_lost(claim, lambda: release(self.layout, claim, "flock", "terminated"))

    @rule(claim=claims)
    def renew(self, claim):
        before = read_state(self.layout, claim.task_id)
        self._unchanged_if_lost(claim, lambda: renew_lease(self.layout, claim, "flock", self.run.lease_s))
        after = read_state(self.layout, claim.task_id)
        if after.claim_token == claim.token:  # before: None while the claim was not written down yet
            assert after.lease_expires_at >= (before.lease_expires_at or 0.0)

    @rule(claim=claims)
    def write_result_then_die(self, claim):
        """A worker runs its attempt and writes result.json, then dies before the terminal write."""
        outcome = execute(self.layout, self.run.run_id, claim, None)
        write_result(self.layout.result(claim.task_id, claim.attempt_index), outcome.result)

    @rule(index=st.integers(0, 2), offset=st.floats(-100, 1000), skew=st.sampled_from([0.0, 5.0, 60.0]))
    def orphan(self, index, offset, skew):
        task_id = self.ids[index]
        state = read_state(self.layout, task_id)
        path = self.layout.result(task_id, state.attempt_index)
        salvage = path.exists() and read_result(path)["status"] == "COMPLETED"  # as the reconciler decides
        orphan_if_expired(self.layout, task_id, "flock", time.time() + offset, skew, salvage)

    @rule(index=st.integers(0, 2))
    def cancel_task(self, index):
        cancel(self.layout, self.ids[index], "flock")

    @rule()
    def reconcile_run(self):
        report = reconcile(self.layout)
        assert report.unrepairable == [] and report.repaired == []

    # -- what must hold after every step

    @invariant()
    def every_state_keeps_its_invariants(self):
        for task_id in self.ids:
            record = read_state(self.layout, task_id)  # check_invariants runs on every read
            record.check_invariants()
            old = self.seen[task_id]
            moves = [(h["from"], h["to"]) for h in record.history]
            assert [h["to"] for h in record.history].count("COMPLETED") <= 1, moves
            assert record.history[: len(old.history)] == old.history, "history was rewritten"
            if old.status in TERMINAL_TASK_STATES:
                assert (record.status, len(record.history)) == (old.status, len(old.history)), moves
            assert old.attempt_index <= record.attempt_index < record.max_attempts
            chain = ["PENDING"] + [to for _, to in moves]
            assert [frm for frm, _ in moves] == chain[:-1] and chain[-1] == record.status.value, moves
            assert all(S(to) in TASK_TRANSITIONS[S(frm)] for frm, to in moves), moves
            if record.salvaged:
                assert read_result(self.layout.result(task_id, record.attempt_index))["status"] == "COMPLETED"
            self.seen[task_id] = record

    @invariant()
    def queue_tokens_agree_with_states(self):
        fast, exact = run_status(self.layout), run_status(self.layout, exact=True)
        assert fast.counts == exact.counts and not exact.unreadable


@pytest.mark.slow
def test_random_operation_sequences_keep_the_state_machine_invariants(tmp_path):
    """Any sequence of claim/finish/orphan/cancel/renew/reconcile keeps every task's invariants."""
    config = write_config(tmp_path, 3, shards=2, max_attempts=2, lease_s=30, heartbeat_s=1, clock_skew_s=5)
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    TaskLifecycleMachine.template = campaign.run_dir("main")
    TaskLifecycleMachine.workdir = tmp_path
    run_state_machine_as_test(TaskLifecycleMachine,
                              settings=settings(max_examples=60, stateful_step_count=30, **FAST_SETTINGS))


# ---------------------------------------------------------------------------------------------
# 6b. Config and spec parsing under random input

SCALARS = (st.none() | st.booleans() | st.integers(-(10 ** 6), 10 ** 6)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
# Values that are valid somewhere, so that examples get past the first schema check.
PLAUSIBLE = st.sampled_from(["a", "b", "h2", "noop", "tblite", "GFN2-xTB", "conf_opt", "species_sp", "../x", "",
                             "species.yaml", 0, 1, 2, 3, 30, 300, 0.5, 2.5, -1, True, None, [], {}, ["h2"], ["a"]])
VALUE = st.one_of(PLAUSIBLE, JSON)

VALID_CONFIG = {
    "campaign": "c", "run_root": "runs", "lock_mode": "flock",
    "defaults": {"engine": "noop", "shards": 2, "lease_s": 30, "heartbeat_s": 1, "options": {"sleep_s": 0}},
    "species": [{"label": "h2", "xyz": "H 0 0 0\nH 0 0 0.74"}, {"label": "hh", "smiles": "[H][H]", "charge": 0}],
    "runs": [{"name": "a", "family": "conf_opt", "species": ["h2"]},
             {"name": "b", "family": "species_sp", "from_run": "a"}],
}
# Per key, values that are valid or nearly so (so examples get past the first check), else anything.
NEAR = {
    "campaign": st.sampled_from(["c", "c.d", "-c", "c/d", "c\n", ""]),
    "run_root": st.sampled_from(["runs", "", "/", "../up", "a\x00b"]),
    "lock_mode": st.sampled_from(["flock", "soft", "nfs"]),
    "species_file": st.sampled_from(["species.yaml", "missing.yaml", ".", "binary.yaml", "a\x00b", "/dev/null",
                                     "../", "dict.yaml"]),
    "name": st.sampled_from(["a", "b", "c", "a/b", ""]),
    "family": st.sampled_from(FAMILIES + ("conf_optt",)),
    "from_run": st.sampled_from(["a", "b", "c", ""]),
    "species": st.sampled_from([["h2"], ["hh", "h2"], ["zz"], [], None]),
    "engine": st.sampled_from(["noop", "tblite", "../x", "gaussian"]),
    "level": st.sampled_from(["GFN2-xTB", "GFN1-xTB", "", "b3lyp"]),
    "label": st.sampled_from(["h2", "hh", "a b", "../x", "é", "h2 ", "x" * 97]),
    "xyz": st.sampled_from(["H 0 0 0\nH 0 0 0.74", "H 0 0 0", "2\n\nH 0 0 0\nH 0 0 nan", "",
                            {"symbols": ["H"], "coords": [[0, 0, 0]]}, {"symbols": []}]),
    "smiles": st.sampled_from(["[H][H]", "C1CC((", "", "[Fe+3]"]),
    "options": st.sampled_from([{}, {"sleep_s": 1}, {"fail": "ess"}, []]),
}
NUMBER = st.one_of(st.integers(-2, 500), st.floats(-2, 500), st.sampled_from([float("nan"), float("inf"), True]))
RUN_KEYS = sorted(RUN_SETTINGS) + ["name", "family", "from_run", "species", "bogus"]
SPECIES_KEYS = ["label", "xyz", "smiles", "charge", "multiplicity", "colour"]
CONFIG_PATHS = ([(key,) for key in [*VALID_CONFIG, "species_file", "extra"]]
                + [("defaults", key) for key in RUN_KEYS]
                + [("runs", i, key) for i in (0, 1) for key in RUN_KEYS]
                + [("species", i, key) for i in (0, 1) for key in SPECIES_KEYS])


@st.composite
def mutated_configs(draw) -> dict:
    """The valid config above with 0-3 fields set to near-valid or arbitrary values, or deleted."""
    config = copy.deepcopy(VALID_CONFIG)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(CONFIG_PATHS))
        try:
            container = functools.reduce(lambda node, key: node[key], path[:-1], config)
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(container, dict):
            continue
        key = path[-1]
        if draw(st.integers(0, 4)) == 0:
            container.pop(key, None)
        else:
            near = NEAR.get(key, NUMBER)
            container[key] = draw(st.one_of(near, near, VALUE))
    return config


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    (folder / "species.yaml").write_text("- {label: h2f, xyz: 'H 0 0 0\n\n  H 0 0 0.75'}\n")
    (folder / "binary.yaml").write_bytes(b"- {label: \xff\xfe}\n")
    (folder / "dict.yaml").write_text("species: [{label: hhf, smiles: '[H][H]'}]\n")
    return folder


@settings(max_examples=300, **FAST_SETTINGS)
@given(data=st.one_of(mutated_configs(), mutated_configs(), JSON))
@example(data={**VALID_CONFIG, "defaults": {**VALID_CONFIG["defaults"], "lease_s": float("nan")}})  # YAML `.nan`
@example(data={"[": None})  # an unknown key with a bracket (found by this test: it was taken for a union tag)
@pytest.mark.slow
def test_parse_campaign_fails_only_with_pipe_rules_errors(config_dir, data):
    """Any config mapping (or non-mapping) parses, or fails with a PipeRulesError naming the problem."""
    try:
        campaign = parse_campaign(data, config_dir / "config.yaml")
    except PipeRulesError as exc:
        event(f"refused at field {str(exc.field).split('.')[0]}")
        return
    event("parsed")
    for run in campaign.runs:  # the documented rule, also for NaN (which compares false both ways)
        assert run.heartbeat_s < run.lease_s, f"run {run.name}: heartbeat_s {run.heartbeat_s}, lease_s {run.lease_s}"


def _load_or_pipe_rules_error(config_dir, content: str | bytes) -> None:
    """Write `content` as a config file and load it: any exception but a PipeRulesError fails the test."""
    path = config_dir / f"config-{uuid.uuid4().hex}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        load_campaign(path)
    except PipeRulesError:
        pass
    finally:
        path.unlink()


YAML_SNIPPETS = st.sampled_from([
    "!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=", "&a [*a]", "*undefined", "2020-01-01",
    "!!timestamp 2001-12-14", ".nan", "-.inf", "{a: !!set {}}", "'unterminated", "[1, 2", "? complex\n: key",
    "!!python/name:os.system", "0x1F", "1e400", "~", "\t- tab", "a: b: c", "- ]",
])


@settings(max_examples=200, **FAST_SETTINGS)
@given(text=st.one_of(mutated_configs().map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=200),
                      st.builds(lambda head, snippet: f"{head}campaign: {snippet}\nruns: [{{name: a, family: conf_opt}}]\n",
                                st.sampled_from(["", "lock_mode: soft\n", "run_root: r\n"]), YAML_SNIPPETS),
                      st.builds(lambda snippet: f"campaign: c\nruns:\n  - name: a\n    family: conf_opt\n"
                                                f"    lease_s: {snippet}\nspecies: [{{label: h2, xyz: 'H 0 0 0'}}]\n",
                                YAML_SNIPPETS)))
@example(text='campaign: c\nspecies_file: "a\\0b"\nruns: [{name: a, family: conf_opt}]\n')
@example(text="campaign: c\nspecies_file: binary.yaml\nruns: [{name: a, family: conf_opt}]\n")
def test_load_campaign_of_any_yaml_text_fails_only_with_pipe_rules_errors(config_dir, text):
    """Any YAML text as config.yaml loads, or fails with a PipeRulesError (never another exception)."""
    _load_or_pipe_rules_error(config_dir, text)


@settings(max_examples=100, **FAST_SETTINGS)
@given(raw=st.binary(max_size=64))
@example(raw=b"campaign: \xe9t\xe9\n")  # Latin-1, as an old editor saves it
def test_load_campaign_of_any_bytes_fails_only_with_pipe_rules_errors(config_dir, raw):
    """A config.yaml of arbitrary bytes (not UTF-8, say) fails with a PipeRulesError, not a traceback."""
    _load_or_pipe_rules_error(config_dir, raw)


def _valid_spec() -> dict:
    return TaskSpec.create(
        task_id="h2_species_sp", family="species_sp", owner_type="species", owner_key="h2", engine="noop",
        level="GFN2-xTB", cores=1, memory_mb=2000, walltime_min=30,
        input_payload={"xyz": {"symbols": ["H", "H"], "isotopes": [1, 1], "coords": [[0, 0, 0], [0, 0, 0.74]]},
                       "charge": 0, "multiplicity": 1},
        ingestion_metadata={"conformer_index": 0}, options={"sleep_s": 0}).as_dict()


SPEC_KEYS = sorted(_valid_spec())


@st.composite
def mutated_specs(draw) -> dict:
    spec = _valid_spec()
    for key in draw(st.lists(st.sampled_from(SPEC_KEYS + ["bogus"]), max_size=3)):
        if draw(st.booleans()):
            spec[key] = draw(VALUE)
        else:
            spec.pop(key, None)
    payload = spec.get("input_payload")
    if isinstance(payload, dict) and draw(st.booleans()):
        xyz = payload.get("xyz")
        if isinstance(xyz, dict):
            xyz = dict(xyz)
            xyz[draw(st.sampled_from(["symbols", "coords", "isotopes", "extra"]))] = draw(VALUE)
        payload = dict(payload, xyz=xyz, **{draw(st.sampled_from(["charge", "multiplicity", "x"])): draw(VALUE)})
        spec["input_payload"] = payload
    return spec


@settings(max_examples=300, **FAST_SETTINGS)
@given(data=st.one_of(mutated_specs(), JSON))
def test_spec_from_any_dict_fails_only_with_spec_errors(data):
    """TaskSpec.from_dict of any JSON value parses or raises SpecError; a parsed spec is self-consistent."""
    try:
        spec = TaskSpec.from_dict(data)
    except SpecError:
        return
    assert spec.as_dict() == data
    check_safe_id(spec.task_id, "task_id")


def test_unmutated_spec_parses():
    """The valid spec the mutations start from parses (so the property above is not vacuous)."""
    assert TaskSpec.from_dict(_valid_spec()).task_id == "h2_species_sp"


# ---------------------------------------------------------------------------------------------
# 7. Security: ids cannot escape the run folder, YAML is loaded safely, files are not writable by others

HOSTILE_IDS = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(list("./\\\x00\n\r a.-_+é\u2024\uff0e\u2215~$*")), max_size=12),
    st.lists(st.sampled_from(["..", ".", "a", "", "\x00", "é", "\u2215", "x\n"]), max_size=6).map("/".join),
    st.sampled_from(["..", "../x", "a/../../..", "/etc/passwd", "a\x00b", "ok\n", ".ok", "-rf", "x..y",
                     "\uff0e\uff0e", "a" * 129, "a" * 128]),
)
DOCUMENTED_ID = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,127}")  # the charset the error message promises


@settings(max_examples=400, **FAST_SETTINGS)
@given(task_id=HOSTILE_IDS)
@example(task_id="ok\n")
def test_task_id_is_refused_or_one_safe_component(task_id):
    """check_safe_id accepts exactly the documented charset, and accepted ids are one plain path component."""
    try:
        check_safe_id(task_id, "task_id")
    except SpecError:
        assert not DOCUMENTED_ID.fullmatch(task_id) or ".." in task_id
        return
    assert DOCUMENTED_ID.fullmatch(task_id) and ".." not in task_id, f"accepted {task_id!r}"


@settings(max_examples=300, **FAST_SETTINGS)
@given(task_id=HOSTILE_IDS)
@example(task_id="../../../../../tmp/x")
@example(task_id="/etc/passwd")
def test_no_path_built_from_a_task_id_leaves_the_run_folder(task_id):
    """Every path RunLayout builds from a task id is refused (SpecError) or stays inside the run folder."""
    root = Path("/srv/runs/c/main")
    layout = RunLayout(root)
    builders = {"task_dir": lambda: layout.task_dir(task_id), "spec": lambda: layout.spec(task_id),
                "state": lambda: layout.state(task_id), "result": lambda: layout.result(task_id, 0),
                "state_lock": lambda: layout.state_lock(task_id),
                "pending_token": lambda: layout.pending_token("shard-000", task_id),
                "inflight_token": lambda: layout.inflight_token(task_id),
                "ended_token": lambda: layout.ended_token("CANCELLED", task_id)}
    for name, build in builders.items():
        try:
            path = build()
        except SpecError:
            continue
        normal = Path(os.path.normpath(path))
        assert normal.is_relative_to(root) and normal != root, \
            f"{name}({task_id!r}) -> {path}"


@settings(max_examples=60, **FAST_SETTINGS)
@given(labels=st.lists(st.one_of(st.text(min_size=1, max_size=12), HOSTILE_IDS.filter(bool)),
                       min_size=1, max_size=3, unique=True))
def test_species_labels_never_place_files_outside_the_run_folder(tmp_path_factory, labels):
    """Staging species with hostile labels (owner keys) writes only inside the run folder, under safe ids."""
    folder = tmp_path_factory.mktemp("labels")
    species = [{"label": label, "xyz": f"H 0 0 0\nH 0 0 {0.7 + 0.01 * i:.2f}"} for i, label in enumerate(labels)]
    config = {"campaign": "c", "run_root": str(folder / "runs"), "species": species,
              "defaults": {"engine": "noop", "shards": 1}, "runs": [{"name": "main", "family": "species_sp"}]}
    try:
        campaign = parse_campaign(config, folder / "config.yaml")
        stage_run(campaign, "main")
    except PipeRulesError as exc:
        event(f"refused: {type(exc).__name__}")
        assert not (folder / "runs" / "c" / "main" / "tasks").exists() or \
            not any((folder / "runs" / "c" / "main" / "tasks").rglob("spec.json"))
        return
    event("staged")
    run_root = folder / "runs" / "c" / "main"
    for path in folder.rglob("*"):
        assert path.resolve().is_relative_to(run_root.resolve()) or path.resolve() in run_root.resolve().parents, path
    layout = RunLayout(run_root)
    owners = set()
    for task_id in manifest_task_ids(layout):
        check_safe_id(task_id, "task_id")
        owners.add(load_spec(layout.spec(task_id)).owner_key)
    assert owners == set(labels)  # the owner key keeps the label as given, only the id is sanitised


PWNED_CONFIG = """campaign: evil
run_root: runs
defaults: {engine: noop}
species: [{label: h2, xyz: "H 0 0 0\\nH 0 0 0.74"}]
runs:
  - name: main
    family: species_sp
    options: !!python/object/apply:os.system ["touch PWNED"]
"""


def test_yaml_python_tags_are_refused_and_never_run(tmp_path):
    """A config with !!python/object/apply fails with one ConfigError line and runs nothing (safe loader)."""
    config = tmp_path / "config.yaml"
    config.write_text(PWNED_CONFIG)
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_campaign(config)
    for command in (["stage", str(config)], ["run", str(config)]):
        proc = pipe_rules_cli(*command, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert lines[0].startswith(f"pipe-rules: error: {config}: is not valid YAML"), lines[0]
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_snakemake_refuses_yaml_python_tags_too(tmp_path):
    """`snakemake --configfile` with the same config (Snakemake's own YAML loader) fails and runs nothing."""
    (tmp_path / "config.yaml").write_text(PWNED_CONFIG)
    proc = subprocess.run([PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                           "--configfile", "config.yaml", "--profile", str(REPO / "profiles" / "local")],
                          cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["umask022", "umask002"])
def test_run_folder_is_not_writable_by_group_or_others(tmp_path, umask):
    """Staged and worked run folders: no group/other write bit on the run dir, tasks dir, or any state file."""
    config = write_config(tmp_path, 2)
    for command in (["stage", str(config)], ["work", str(tmp_path / "runs" / "test" / "main"), "--no-linger"]):
        proc = subprocess.run([PYTHON, "-m", "pipe_rules", *command], check=False, capture_output=True,
                              text=True, preexec_fn=lambda: os.umask(umask), timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
    root = tmp_path / "runs" / "test" / "main"
    writable = [f"{oct(stat.S_IMODE(p.stat().st_mode))} {p.relative_to(root)}" for p in [root, *root.rglob("*")]
                if p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]
    assert not writable, f"group/other-writable under umask {oct(umask)}: " + ", ".join(writable[:8])
