"""Fault injection against real processes and real files: SIGKILL at random points, overlapping
workers and Snakemake invocations, clock skew, a full disk, corrupt or truncated run files, temp
files left by killed writers, and stagers racing on one run.

The faults are real (signals, a tiny tmpfs, RLIMIT_FSIZE, bytes written over files); the `noop`
engine only makes tasks last (`sleep_s`). Nothing here waits on a timer to decide pass or fail:
waits poll the files on disk and time out only to turn a hang into a failure.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PYTHON, REPO, mounted_tmpfs, pipe_rules_cli, wait_until, write_config

import pipe_rules.execution.worker as worker_module
import pipe_rules.store.lifecycle as lifecycle_module
import pipe_rules.store.reconcile as reconcile_module
import pipe_rules.store.taskstate as taskstate_module
from pipe_rules.execution.worker import run_worker
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.lifecycle import claim_and_start, finish, orphan_if_expired
from pipe_rules.store.manifest import manifest_task_ids, read_manifest
from pipe_rules.store.reconcile import orphan_expired_inflight, reconcile
from pipe_rules.store.records_io import load_records
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.states import IN_FLIGHT_TASK_STATES, TERMINAL_TASK_STATES, RunState, TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state

S = TaskState
# What a writer killed between open() and rename() leaves: `.<name>.<host>.<pid>.tmp` (atomic
# writes) or `.<name>.<host>.<pid>.new` (create-once writes of run.json).
TEMP_NAME = re.compile(r"^\.[^/]+\.json\.[^/]+\.\d+\.(tmp|new)$")
FAST = {"lease_s": 1, "heartbeat_s": 0.2, "clock_skew_s": 0}


# ---------------------------------------------------------------------------------------------
# helpers


def _start_worker(layout: RunLayout, *extra: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "pipe_rules", "work", str(layout.root), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _states(layout: RunLayout) -> dict:
    return {task_id: read_state(layout, task_id) for task_id in manifest_task_ids(layout)}


def _completions(record) -> int:
    return [h["to"] for h in record.history].count("COMPLETED")


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file() and (p.name.endswith(".tmp") or p.name.endswith(".new"))]


def _status(layout: RunLayout, *extra: str) -> dict:
    proc = pipe_rules_cli("status", str(layout.root), "--json", *extra, check=True)
    return json.loads(proc.stdout)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in _files_under(root)}


def _one_line_error(proc, path: Path) -> str:
    """The CLI's contract for bad input: exit 2 and exactly one stderr line naming the file."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, f"exit {proc.returncode}, stderr:\n{proc.stderr[-2000:]}"
    assert lines[0].startswith(f"pipe-rules: error: {path}"), lines[0]
    return lines[0]


def _drain(layout: RunLayout, rounds: int = 8) -> None:
    """What an operator does after a crash: `pipe-rules reconcile`, then a clean (lingering) worker,
    until every task is terminal."""
    for _ in range(rounds):
        pipe_rules_cli("reconcile", str(layout.root), check=True)
        run_worker(layout.root, install_signals=False)
        if all(s.status in TERMINAL_TASK_STATES for s in _states(layout).values()):
            return
    raise AssertionError(f"run not drained after {rounds} rounds: "
                         f"{ {t: s.status.value for t, s in _states(layout).items()} }")


def _assert_every_task_completed_once(layout: RunLayout) -> None:
    for task_id, state in _states(layout).items():
        assert state.status is S.COMPLETED, (task_id, state.status, state.failure_reason)
        assert _completions(state) == 1, (task_id, [(h["from"], h["to"]) for h in state.history])
        attempts = [h["attempt"] for h in state.history]
        assert attempts == sorted(attempts), (task_id, attempts)  # attempt index never goes back
        assert state.attempt_index < state.max_attempts
        assert read_result(layout.result(task_id, state.attempt_index))["status"] == "COMPLETED", task_id


def _assert_results_whole(layout: RunLayout) -> None:
    """Every result.json a reader can find is whole, valid, and filed under its own attempt."""
    for path in layout.tasks_dir.glob("*/*/attempts/*/result.json"):
        data = read_result(path)  # parses and validates against the result schema
        assert data["task_id"] == path.parents[2].name and data["attempt_index"] == int(path.parent.name), path


def _assert_no_tokens_left(layout: RunLayout) -> None:
    stray = _files_under(layout.root / "queue")
    assert not stray, f"queue tokens left for completed tasks: {[str(p.relative_to(layout.root)) for p in stray]}"


# ---------------------------------------------------------------------------------------------
# 1. SIGKILL of workers at random points


KILL_SEEDS = [pytest.param(seed, marks=[pytest.mark.slow]) for seed in range(15)]


def _attempts_started(layout: RunLayout) -> int:
    return sum(1 for _ in layout.tasks_dir.glob("*/*/attempts/*"))


def _kill_round(layout: RunLayout, rng: random.Random) -> None:
    """Start 2-3 workers, let them get going, SIGKILL one or all of them at a random moment."""
    before = _attempts_started(layout)
    workers = [_start_worker(layout, "--no-linger", "--shard", f"shard-00{i}") for i in range(rng.choice((2, 3)))]
    try:
        # Start the clock at the first new attempt, so the kill lands inside the work (claim,
        # engine, result write or terminal write), not in the interpreter's start-up.
        wait_until(lambda: _attempts_started(layout) > before or all(w.poll() is not None for w in workers),
                  what="first claim")
        time.sleep(rng.uniform(0, 0.15))
        for victim in (workers if rng.random() < 0.5 else [rng.choice(workers)]):
            victim.send_signal(signal.SIGKILL)
        for worker in workers:
            worker.wait(60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_sigkill_at_random_points_completes_every_task_exactly_once(staged_run, seed):
    """Three rounds of SIGKILL of one or all workers at random moments: afterwards every task completed once."""
    rng = random.Random(seed)
    layout = staged_run(30, shards=3, linger_s=3, options={"sleep_s": rng.choice((0, 0.005, 0.01))}, **FAST)
    for _ in range(3):  # later rounds run on what the killed ones left, without a reconcile between
        _kill_round(layout, rng)

    for path in _temp_files(layout.root):  # a killed writer may leave its temp file, never a half file
        assert TEMP_NAME.match(path.name), f"unexpected leftover {path}"
    _drain(layout)
    final = pipe_rules_cli("reconcile", str(layout.root), check=True)
    assert final.stdout.startswith("run COMPLETED: COMPLETED=30;"), final.stdout

    _assert_every_task_completed_once(layout)
    _assert_results_whole(layout)
    _assert_no_tokens_left(layout)
    assert read_run(layout).state is RunState.COMPLETED
    fast, exact = _status(layout), _status(layout, "--exact")
    assert fast["tasks"] == exact["tasks"] and fast["tasks"]["COMPLETED"] == 30
    assert "unreadable" not in exact


def test_leftover_temp_files_of_killed_writers_are_ignored_by_readers(staged_run):
    """Temp files a SIGKILL leaves beside state, result, run and manifest files are never read as data."""
    layout = staged_run(3)
    run_worker(layout.root, install_signals=False)
    task_id = manifest_task_ids(layout)[0]
    garbage = '{"status": "RUNN'  # what a writer killed mid-write leaves in its temp file
    planted = [layout.task_dir(task_id) / ".state.json.deadhost.4242.tmp",
               layout.attempt_dir(task_id, 0) / ".result.json.deadhost.4242.tmp",
               layout.root / ".run.json.deadhost.4242.tmp",
               layout.root / ".run.json.deadhost.4242.new",
               layout.root / ".manifest.tsv.deadhost.4242.tmp",
               layout.results_dir / ".summary.json.deadhost.4242.tmp",
               layout.results_dir / ".records.jsonl.deadhost.4242.tmp"]
    for path in planted:
        path.write_text(garbage)
    state_before = layout.state(task_id).read_bytes()

    assert _status(layout)["tasks"]["COMPLETED"] == 3
    exact = _status(layout, "--exact")
    assert exact["tasks"]["COMPLETED"] == 3 and "unreadable" not in exact
    repaired = pipe_rules_cli("reconcile", str(layout.root), check=True)
    assert "repaired 0" in repaired.stdout and repaired.stderr == ""
    assert "removed 0 stale temp file(s)" in repaired.stdout  # another host's, and young: maybe live
    assert all(path.exists() for path in planted)
    pipe_rules_cli("ingest", str(layout.root), check=True)
    records = load_records(layout)
    assert records["failed"] == [] and len(records["owners"]) == 3
    assert run_worker(layout.root, install_signals=False).completed == 0
    assert layout.state(task_id).read_bytes() == state_before


# ---------------------------------------------------------------------------------------------
# 2. Overlapping allocations and concurrent Snakemake invocations


def _worker_counts(stdout: str) -> tuple[int, int]:
    match = re.search(r"(\d+) completed, \d+ failed, \d+ released, (\d+) lost ownership", stdout)
    assert match, stdout
    return int(match.group(1)), int(match.group(2))


def test_two_workers_started_on_the_same_shard_complete_each_task_once(staged_run):
    """Two allocations that run the same shard at once: every task runs and completes exactly once."""
    layout = staged_run(40, shards=2, options={"sleep_s": 0.005})
    workers = [_start_worker(layout, "--no-linger", "--shard", "shard-000") for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    counts = [_worker_counts(out) for out, _ in outputs]
    assert sum(done for done, _ in counts) == 40 and all(lost == 0 for _, lost in counts), counts
    _assert_every_task_completed_once(layout)
    for task_id in manifest_task_ids(layout):  # one attempt each: nothing ran twice
        assert [p.parent.name for p in layout.task_dir(task_id).glob("attempts/*/result.json")] == ["0"], task_id
    _assert_no_tokens_left(layout)


def _snakemake(folder: Path) -> subprocess.Popen:
    # `--nolock`: without it the second invocation refuses to start ("LockException: Directory
    # cannot be locked"), since Snakemake itself allows one invocation per working folder.
    cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
           "--configfile", "config.yaml", "--profile", str(REPO / "profiles" / "local"), "--nolock"]
    return subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_concurrent_snakemake_invocations_complete_each_task_once(tmp_path):
    """Two `snakemake --nolock` on one run at once (both stage, 2x3 shard workers): no task completes twice."""
    write_config(tmp_path, 40, shards=3, options={"sleep_s": 0.01})
    runs = [_snakemake(tmp_path) for _ in range(2)]
    logs = [r.communicate(timeout=300)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    layout = RunLayout(tmp_path / "runs" / "test" / "main")
    assert len(manifest_task_ids(layout)) == 40
    _assert_every_task_completed_once(layout)
    for task_id in manifest_task_ids(layout):
        assert [p.parent.name for p in layout.task_dir(task_id).glob("attempts/*/result.json")] == ["0"], task_id
    _assert_no_tokens_left(layout)
    records = load_records(layout)
    assert records["failed"] == [] and len(records["owners"]) == 40


# ---------------------------------------------------------------------------------------------
# 3. Clock skew


class _SkewedClock:
    """Stands in for the `time` module on a node whose clock runs `skew_s` ahead of the others."""

    def __init__(self, skew_s: float):
        self.skew_s = skew_s

    def time(self) -> float:
        return time.time() + self.skew_s

    def __getattr__(self, name):
        return getattr(time, name)


def _live_task(staged_run, **settings):
    """A real worker process holding the only task of a run, with at least one heartbeat done."""
    layout = staged_run(1, shards=1, options={"sleep_s": 2}, **settings)
    task_id = manifest_task_ids(layout)[0]
    worker = _start_worker(layout, "--no-linger")
    wait_until(lambda: (s := read_state(layout, task_id)).status is S.RUNNING and s.heartbeat_at > s.claimed_at,
              what="a running task with a fresh heartbeat")
    return layout, task_id, worker


@pytest.mark.slow
def test_clock_ahead_by_less_than_clock_skew_s_orphans_no_live_task(staged_run, monkeypatch):
    """A lingering worker whose clock runs clock_skew_s ahead leaves a heart-beating task alone."""
    layout, task_id, holder = _live_task(staged_run, lease_s=10, heartbeat_s=0.3, clock_skew_s=60, linger_s=60)
    run = read_run(layout)
    token = read_state(layout, task_id).claim_token
    # What protects the task: a lease counts as expired only when lease_expires_at + clock_skew_s
    # < now, and the holder's heartbeat keeps lease_expires_at >= its own now + lease_s - heartbeat_s.
    assert orphan_if_expired(layout, task_id, run.lock_mode, time.time() + run.clock_skew_s,
                             run.clock_skew_s, salvage=False) is None
    skewed = _SkewedClock(run.clock_skew_s)
    for module in (worker_module, reconcile_module, lifecycle_module, taskstate_module):
        monkeypatch.setattr(module, "time", skewed)
    assert orphan_expired_inflight(layout, run, [task_id]).requeued == 0
    assert reconcile(layout).orphaned == []
    assert read_state(layout, task_id).claim_token == token
    # The skewed node's idle worker lingers, watching the task, until the holder finishes it.
    watcher = run_worker(layout.root, install_signals=False)
    monkeypatch.undo()
    out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    assert (watcher.completed, watcher.lost) == (0, 0)
    assert _worker_counts(out) == (1, 0)
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index) == (S.COMPLETED, 0)
    assert "ORPHANED" not in [h["to"] for h in state.history]


@pytest.mark.slow
def test_clock_ahead_by_more_than_lease_plus_clock_skew_s_orphans_a_live_task_once(staged_run):
    """The documented limit: skew > lease_s + clock_skew_s orphans a live task; it still completes once."""
    layout, task_id, holder = _live_task(staged_run, lease_s=10, heartbeat_s=0.3, clock_skew_s=60)
    run = read_run(layout)
    skew = run.lease_s + run.clock_skew_s + 1
    record = orphan_if_expired(layout, task_id, run.lock_mode, time.time() + skew, run.clock_skew_s, salvage=False)
    assert record is not None and (record.status, record.attempt_index) == (S.PENDING, 1)
    assert "expired" in record.failure_reason
    out, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    # The holder finds its claim gone when it reports, then runs the re-queued attempt itself.
    assert _worker_counts(out) == (1, 1)
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index, _completions(state)) == (S.COMPLETED, 1, 1)
    assert ("RUNNING", "ORPHANED") in [(h["from"], h["to"]) for h in state.history]


# ---------------------------------------------------------------------------------------------
# 4. Disk full


def _big_species(n_atoms: int = 600) -> list[dict]:
    """One species whose result.json (it carries the geometry) spans several pages, while its
    state.json stays within one: the disk can hold a state write but not the result."""
    xyz = "\n".join(f"H 0 0 {i * 1.0:.1f}" for i in range(n_atoms))
    return [{"label": "big", "xyz": xyz}]


def _stage_in(folder: Path, **settings) -> RunLayout:
    config = write_config(folder, **settings)
    campaign = load_campaign(config)
    stage_run(campaign, campaign.runs[0].name)
    return RunLayout(campaign.run_dir(campaign.runs[0].name))


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 200 KiB filesystem that can be filled up (mounting needs root: skipped otherwise)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    with mounted_tmpfs(mount, "size=200k") as folder:
        yield folder


def _fill(mount: Path, leave_bytes: int) -> Path:
    """Write a filler file until at most `leave_bytes` stay free (ENOSPC ends it early)."""
    filler = mount / "filler"
    stat = os.statvfs(mount)
    todo = stat.f_bavail * stat.f_frsize - leave_bytes
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while todo > 0:
            todo -= os.write(fd, b"\0" * min(todo, 65536))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def _assert_handed_back_with_os_error(layout: RunLayout, task_id: str, worker_output: str) -> None:
    """README: disk full is an environment failure, FAILED_RETRYABLE and re-queued (or FAILED_TERMINAL
    once the budget is spent), and the reason says so; never left RUNNING without a worker."""
    state = read_state(layout, task_id)  # also: state.json still parses
    assert state.status not in IN_FLIGHT_TASK_STATES, (
        f"task left {state.status.value} (attempt {state.attempt_index}) after its worker exited; "
        f"worker output ends:\n{worker_output[-1500:]}")
    assert state.status in (S.PENDING, S.FAILED_TERMINAL), state.status
    assert "os_error_" in (state.failure_reason or ""), state.failure_reason
    if state.status is S.PENDING:
        assert state.attempt_index == 1 and ("RUNNING", "FAILED_RETRYABLE") in \
            [(h["from"], h["to"]) for h in state.history]
        assert layout.pending_token(state.shard, task_id).exists()


@pytest.mark.slow
def test_disk_full_while_writing_result_hands_the_task_back(tiny_tmpfs):
    """tmpfs filled while the engine runs: the result write fails (ENOSPC), the task is re-queued, not stuck."""
    layout = _stage_in(tiny_tmpfs, species=_big_species(), shards=1, lease_s=30, heartbeat_s=1,
                       options={"sleep_s": 1.5})
    task_id = manifest_task_ids(layout)[0]
    worker = _start_worker(layout, "--no-linger", cwd=tiny_tmpfs.parent)
    try:
        wait_until(lambda: read_state(layout, task_id).status is S.RUNNING, what="task running")
        filler = _fill(tiny_tmpfs, leave_bytes=4096)  # room for a state write, not for the result
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    for state_file in layout.tasks_dir.glob("*/*/state.*json"):
        read_state(layout, state_file.parent.name)  # every state.json still parses
    assert not layout.result(task_id, 0).exists() or read_result(layout.result(task_id, 0))
    _assert_handed_back_with_os_error(layout, task_id, out + err)
    filler.unlink()
    if read_state(layout, task_id).status is S.PENDING:  # re-queued: it completes once space is back
        run_worker(layout.root, install_signals=False)
        _assert_every_task_completed_once(layout)


def _limit_file_size(max_bytes: int):
    def apply() -> None:  # in the child: writes past max_bytes fail with EFBIG (SIGXFSZ ignored)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def test_file_size_limit_while_writing_result_hands_the_task_back(staged_run):
    """RLIMIT_FSIZE below the result's size (EFBIG on write, no root needed): the task is re-queued, not stuck."""
    layout = staged_run(species=_big_species(), shards=1, lease_s=30, heartbeat_s=1)
    task_id = manifest_task_ids(layout)[0]
    worker = _start_worker(layout, "--no-linger", preexec_fn=_limit_file_size(8192))
    out, err = worker.communicate(timeout=60)
    for state_file in layout.tasks_dir.glob("*/*/state.*json"):
        read_state(layout, state_file.parent.name)
    _assert_handed_back_with_os_error(layout, task_id, out + err)
    if read_state(layout, task_id).status is S.PENDING:  # re-queued: it completes without the limit
        run_worker(layout.root, install_signals=False)
        _assert_every_task_completed_once(layout)


def test_disk_full_at_claim_strands_no_task(tiny_tmpfs):
    """A worker started on a full disk cannot claim; once space is back, a plain worker finishes every task."""
    layout = _stage_in(tiny_tmpfs, n_tasks=3, shards=1, lease_s=30, heartbeat_s=1)
    filler = _fill(tiny_tmpfs, leave_bytes=0)
    pipe_rules_cli("work", str(layout.root), "--no-linger")
    for task_id, state in _states(layout).items():  # every state.json still parses, nothing half-claimed
        assert state.status is S.PENDING and state.attempt_index == 0, (task_id, state.status)
    filler.unlink()
    done = run_worker(layout.root, install_signals=False, linger=False)
    assert done.completed == 3, (
        f"only {done.completed} of 3 tasks claimable after the disk-full claim; queue files: "
        f"{[str(p.relative_to(layout.root)) for p in _files_under(layout.root / 'queue')]}")
    _assert_every_task_completed_once(layout)


# ---------------------------------------------------------------------------------------------
# 5. Corrupt or truncated run files


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CORRUPTIONS = {
    "truncated": _truncate,
    "empty": lambda p: p.write_bytes(b""),
    "not-an-object": lambda p: p.write_text("[]\n"),
}


@pytest.fixture
def finished(staged_run):
    layout = staged_run(3)
    assert run_worker(layout.root, install_signals=False).completed == 3
    reconcile(layout)  # the run state is settled, as after a real run's ingest step
    return layout


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("command", ["status", "reconcile", "work", "ingest"])
def test_corrupt_run_json_is_one_line_naming_it_in_every_command(finished, corruption, command):
    """A truncated, empty or non-object run.json stops every command with one line naming it; nothing changes."""
    CORRUPTIONS[corruption](finished.run_json)
    before = _tree_digest(finished.root)
    line = _one_line_error(pipe_rules_cli(command, str(finished.root)), finished.run_json)
    assert "run metadata" in line
    assert _tree_digest(finished.root) == before


@pytest.mark.parametrize("corruption", ["truncated", "empty", "missing-tasks"])
@pytest.mark.parametrize("command", ["ingest", "stage"])
def test_corrupt_manifest_is_one_line_naming_it(finished, corruption, command):
    """The commands that read manifest.tsv (ingest, stage) stop with one line naming it when it is corrupt;
    an emptied manifest is what a stager killed before its first append leaves: ingest refuses it (it
    lists fewer tasks than run.json counts), staging again lists every staged task again."""
    manifest = finished.manifest
    listed = manifest.read_bytes()
    {**CORRUPTIONS, "missing-tasks": lambda p: p.write_text("{}\n")}[corruption](manifest)
    before = _tree_digest(finished.root)
    args = [str(finished.root.parents[2] / "config.yaml")] if command == "stage" else [str(finished.root)]
    if command == "stage" and corruption == "empty":
        assert pipe_rules_cli(command, *args).returncode == 0
        assert sorted(manifest.read_bytes().splitlines()) == sorted(listed.splitlines())
        return
    _one_line_error(pipe_rules_cli(command, *args), manifest)
    assert _tree_digest(finished.root) == before


@pytest.mark.parametrize("name", ["run.json", "manifest.tsv", "spec.json"])
def test_repair_hint_in_corrupt_file_errors_works(finished, name):
    """An error that says "run 'pipe-rules reconcile' to repair it" is one reconcile actually repairs."""
    task_id = manifest_task_ids(finished)[0]
    path = {"spec.json": finished.spec(task_id), "run.json": finished.run_json, "manifest.tsv": finished.manifest}[name]
    _truncate(path)
    line = _one_line_error(pipe_rules_cli("ingest", str(finished.root)), path)
    if "pipe-rules reconcile" not in line:
        return  # no repair promised
    pipe_rules_cli("reconcile", str(finished.root))
    again = pipe_rules_cli("ingest", str(finished.root))
    assert again.returncode == 0, (
        f"the error promised that 'pipe-rules reconcile' repairs {name}, but after it ingest still says: "
        f"{again.stderr.strip()}")


@pytest.mark.parametrize("corruption", ["truncated", "empty", "missing", "not-an-object", "binary"])
def test_broken_spec_ends_failed_terminal_invalid_spec_never_running(staged_run, corruption):
    """A truncated/empty/missing/binary spec.json: the task ends FAILED_TERMINAL invalid_spec, never stuck RUNNING."""
    layout = staged_run(2)
    task_id = manifest_task_ids(layout)[0]
    spec = layout.spec(task_id)
    {**CORRUPTIONS, "missing": lambda p: p.unlink(), "binary": lambda p: p.write_bytes(b"\xff\xfe{\x00")}[corruption](spec)
    proc = pipe_rules_cli("work", str(layout.root), "--no-linger")
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = read_state(layout, task_id)
    assert (state.status, state.failure_reason) == (S.FAILED_TERMINAL, "invalid_spec"), state.failure_reason
    assert not layout.inflight_token(task_id).exists()
    message = read_result(layout.result(task_id, 0))["engine_message"]
    assert message.startswith(f"{spec}: "), message
    counts = _status(layout)["tasks"]
    assert (counts["FAILED_TERMINAL"], counts["COMPLETED"], counts["RUNNING"]) == (1, 1, 0)
    assert read_state(layout, manifest_task_ids(layout)[1]).status is S.COMPLETED
    if corruption != "missing":  # ingest refuses the run with one line naming the broken spec
        _one_line_error(pipe_rules_cli("ingest", str(layout.root)), spec)


def test_truncated_state_of_pending_task_is_reported_by_work_and_repaired_by_reconcile(staged_run):
    """A truncated state.json of a PENDING task: `work` names it and goes on, `reconcile` repairs, it then runs once."""
    layout = staged_run(3)
    task_id = manifest_task_ids(layout)[0]
    _truncate(layout.state(task_id))
    proc = pipe_rules_cli("work", str(layout.root), "--no-linger")
    assert proc.returncode == 0 and _worker_counts(proc.stdout) == (2, 0), proc.stderr
    assert f"{layout.state(task_id)}: task state is corrupt or truncated" in proc.stderr
    repaired = pipe_rules_cli("reconcile", str(layout.root), check=True)
    assert "repaired 1" in repaired.stdout
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index) == (S.PENDING, 0)
    assert _worker_counts(pipe_rules_cli("work", str(layout.root), "--no-linger", check=True).stdout) == (1, 0)
    _assert_every_task_completed_once(layout)


@pytest.mark.parametrize("corruption", ["truncated", "empty", "binary"])
def test_reconcile_repairs_corrupt_state_from_the_completed_attempt(staged_run, corruption):
    """A corrupt state.json of a task completed at attempt 1 is rebuilt as COMPLETED at attempt 1, not re-run."""
    layout = staged_run(1)
    task_id = manifest_task_ids(layout)[0]
    claim = claim_and_start(layout, task_id, "flock", "crashed-worker", 30)  # attempt 0 fails transiently
    assert finish(layout, claim, "flock", S.FAILED_RETRYABLE, "transient", "no_output").status is S.PENDING
    assert run_worker(layout.root, install_signals=False).completed == 1
    result_bytes = layout.result(task_id, 1).read_bytes()
    {**CORRUPTIONS, "binary": lambda p: p.write_bytes(b'{"status": "\xff\xfe')}[corruption](layout.state(task_id))
    repaired = pipe_rules_cli("reconcile", str(layout.root))
    assert repaired.returncode == 0 and "repaired 1" in repaired.stdout, repaired.stderr[-2000:]
    state = read_state(layout, task_id)
    assert (state.status, state.attempt_index) == (S.COMPLETED, 1)
    assert run_worker(layout.root, install_signals=False).completed == 0
    assert layout.result(task_id, 1).read_bytes() == result_bytes
    assert _status(layout)["tasks"]["COMPLETED"] == 1


@pytest.mark.parametrize("ended", ["FAILED_ESS", "CANCELLED"])
def test_reconcile_repair_of_corrupt_state_keeps_an_ended_task_ended(staged_run, ended):
    """A corrupt state.json of a FAILED_ESS or CANCELLED task is repaired without the task running again."""
    if ended == "FAILED_ESS":  # a deterministic engine error: never retried
        layout = staged_run(1, options={"fail": "ess"})
        assert run_worker(layout.root, install_signals=False).failed == 1
    else:
        layout = staged_run(1)
        assert "cancelled 1 task(s)" in pipe_rules_cli("cancel", str(layout.root), check=True).stdout
    task_id = manifest_task_ids(layout)[0]
    assert read_state(layout, task_id).status is S(ended)
    attempts_before = sorted(p.name for p in layout.task_dir(task_id).glob("attempts/*"))
    _truncate(layout.state(task_id))
    assert "repaired 1" in pipe_rules_cli("reconcile", str(layout.root), check=True).stdout
    pipe_rules_cli("work", str(layout.root), "--no-linger", check=True)
    state = read_state(layout, task_id)
    attempts_after = sorted(p.name for p in layout.task_dir(task_id).glob("attempts/*"))
    assert (state.status.value, attempts_after) == (ended, attempts_before), (
        f"after the repair the {ended} task became {state.status.value} and ran attempts {attempts_after}")


# ---------------------------------------------------------------------------------------------
# 6. Temp files of killed writers, and stagers racing on one run

# A writer paused between writing its temp file and renaming it: the rename waits for GO to exist.
_PAUSED_WRITER = """
import os, sys, time
from pathlib import Path
from pipe_rules.store import fsio
real_replace, go = os.replace, Path(sys.argv[2])
def paused(src, dst):
    while not go.exists():
        time.sleep(0.01)
    real_replace(src, dst)
fsio.os.replace = paused
fsio.atomic_write_json(Path(sys.argv[1]), {"written_by": os.getpid()})
"""


def _temp_of(target: Path, pid: int) -> Path:
    return target.with_name(f".{target.name}.{socket.gethostname()}.{pid}.tmp")


def _backdate(path: Path, seconds: float) -> None:
    """Stand-in for waiting: the file looks `seconds` older (its writer's pid state is untouched)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.mark.slow
def test_reconcile_removes_temp_files_of_killed_writers_and_never_a_live_writers(staged_run, tmp_path):
    """`pipe-rules reconcile` deletes the temp file of a writer SIGKILLed mid-write (and one an hour old from
    another host), keeps a live writer's and a young one of another host; the live write then completes."""
    layout = staged_run(2)
    run_worker(layout.root, install_signals=False)
    task_id = manifest_task_ids(layout)[0]
    state_before = layout.state(task_id).read_bytes()
    go = tmp_path / "go"
    killed = subprocess.Popen([PYTHON, "-c", _PAUSED_WRITER, str(layout.state(task_id)), str(tmp_path / "never")])
    live = subprocess.Popen([PYTHON, "-c", _PAUSED_WRITER, str(layout.records), str(go)])
    try:
        killed_temp, live_temp = _temp_of(layout.state(task_id), killed.pid), _temp_of(layout.records, live.pid)
        wait_until(lambda: killed_temp.exists() and live_temp.exists(), what="both writers' temp files")
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
        other_young = layout.attempt_dir(task_id, 0) / ".result.json.otherhost.4242.tmp"
        other_old = layout.root / ".manifest.json.otherhost.4243.new"
        for path in (other_young, other_old):
            path.write_text('{"status": "RUNN')
        for path in (killed_temp, live_temp):
            _backdate(path, 60)  # past the grace a dead writer gets; far from the age that condemns any file
        _backdate(other_old, 2 * 3600)

        out = pipe_rules_cli("reconcile", str(layout.root), check=True).stdout
        assert "removed 2 stale temp file(s)" in out, out
        assert not killed_temp.exists() and not other_old.exists()
        assert live_temp.exists() and other_young.exists()
        assert layout.state(task_id).read_bytes() == state_before

        go.touch()  # the live writer goes on: its rename finds its temp file where it left it
        assert live.wait(timeout=60) == 0
        assert json.loads(layout.records.read_text()) == {"written_by": live.pid}
        assert not live_temp.exists()
    finally:
        for proc in (killed, live):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


_STAGER = """
import os, sys, time
from pathlib import Path
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
campaign, go = load_campaign(Path(sys.argv[1])), Path(sys.argv[2])
Path(f"{go}.ready.{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.002)
print(stage_run(campaign, "main").new_tasks)
"""

# Workers that keep starting while the stagers run, so a loser's state write would hit a state
# a worker has already moved on (the race that made a task run twice).
_WORKER_LOOP = """
import sys, time
from pathlib import Path
from pipe_rules.execution.worker import run_worker
root, stop = Path(sys.argv[1]), Path(sys.argv[2])
completed = 0
while not any(root.glob("run*.json")) if root.is_dir() else True:
    time.sleep(0.002)
while True:
    last = stop.exists()
    completed += run_worker(root, linger=False, install_signals=False).completed
    if last:
        break
print(completed)
"""


@pytest.mark.slow
def test_four_concurrent_stagers_stage_each_task_once_while_workers_drain(tmp_path):
    """4 processes stage the same 500-task run at once while 2 workers drain it: each task gets one state,
    one queue token and one manifest entry, workers complete each task exactly once, restaging adds nothing."""
    n = 500
    config = write_config(tmp_path, n, shards=3)
    layout = RunLayout(load_campaign(config).run_dir("main"))
    go, stop = tmp_path / "go", tmp_path / "stop"
    stagers = [subprocess.Popen([PYTHON, "-c", _STAGER, str(config), str(go)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    workers = [subprocess.Popen([PYTHON, "-c", _WORKER_LOOP, str(layout.root), str(stop)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        wait_until(lambda: len(list(tmp_path.glob("go.ready.*"))) == 4, what="4 stagers ready")
        go.touch()  # all four start writing together
        staged = []
        for proc in stagers:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            staged.append(int(out.split()[-1]))
        stop.touch()
        completed = []
        for proc in workers:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            completed.append(int(out.split()[-1]))
    finally:
        for proc in stagers + workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sum(staged) == n, f"states created per stager: {staged}"
    manifest = read_manifest(layout)
    ids = [entry[0] for entry in manifest["tasks"]]
    assert len(ids) == len(set(ids)) == n and read_run(layout).n_tasks == n
    shard_of = {entry[0]: entry[1] for entry in manifest["tasks"]}
    for task_id, state in _states(layout).items():  # a state a stager lost the race for names the winner's shard
        assert state.shard == shard_of[task_id], task_id
    completed.append(run_worker(layout.root, linger=False, install_signals=False).completed)
    assert sum(completed) == n, f"completions per worker: {completed} (a task ran twice, or never)"
    _assert_every_task_completed_once(layout)
    for state in _states(layout).values():  # claimed once, from the one PENDING state staged
        assert [h["to"] for h in state.history] == ["CLAIMED", "RUNNING", "COMPLETED"], state.history
    _assert_no_tokens_left(layout)
    assert _temp_files(layout.root) == []

    again = stage_run(load_campaign(config), "main")
    assert (again.new_tasks, again.existing_tasks) == (0, n)
    assert _files_under(layout.root / "queue") == [] and read_run(layout).n_tasks == n


def test_racing_stager_never_overwrites_a_state_a_worker_moved_on(staged_run):
    """A stager that finds a task folder already made (it lost the race) leaves the state and token alone,
    even when the task is already COMPLETED, and lists it under the shard its state names."""
    layout = staged_run(3, shards=2)
    run_worker(layout.root, install_signals=False)
    before = _tree_digest(layout.root / "tasks")
    layout.manifest.unlink()  # what a stager sees that read the manifest before the winner wrote it
    report = stage_run(load_campaign(layout.root.parents[2] / "config.yaml"), "main")
    assert (report.new_tasks, report.existing_tasks) == (0, 3)
    assert _tree_digest(layout.root / "tasks") == before
    assert _files_under(layout.root / "queue") == []
    manifest = read_manifest(layout)
    assert sorted(e[0] for e in manifest["tasks"]) == sorted(_states(layout))
    assert all(read_state(layout, t).shard == shard for t, shard, _ in manifest["tasks"])
