"""Many nodes, one shared filesystem: two client mounts of a real GlusterFS volume and of a real sshfs
folder (tests/cluster/start_sharedfs.sh), workers on both mounts, each in its own UTS and PID
namespace as on another node. First the rigs' own properties (so a rig that changes is caught),
then concurrent claims from both mounts, then kill storms in both lock modes."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import PYTHON, h2_species, pipe_rules_cli, wait_until
from sharedfs.probe import probe
from sharedfs.storm import run_storm
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.store.fsio import read_json
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.records_io import load_records
from pipe_rules.store.runrecord import read_run
from pipe_rules.store.taskstate import read_state

pytestmark = pytest.mark.sharedfs  # tests/run_tests.sh runs these in one process: they share the mounts

MNT = Path(os.environ.get("PIPE_RULES_SHAREDFS", "/mnt/pipe_rules_sharedfs"))
SSHFS_EXPORT = Path(os.environ.get("PIPE_RULES_SHAREDFS_STATE", "/var/lib/pipe_rules_sharedfs")) / "export"
RIGS = {"gluster": "fuse.glusterfs", "sshfs": "fuse.sshfs"}
# What each rig was measured to do (README "Shared filesystems"); the design relies on the first five.
EXPECTED = {
    "gluster": {"o_excl_exclusive_across_mounts": True, "link_exclusive_across_mounts": True,
                "mkdir_exclusive_across_mounts": True, "rename_succeeds_once_across_mounts": True, "new_name_opens_at_once": True,
                "flock_excludes_across_mounts": True, "lockf_excludes_across_mounts": True,
                "new_file_listed_at_once": True},
    "sshfs": {"o_excl_exclusive_across_mounts": True, "link_exclusive_across_mounts": True,
              "mkdir_exclusive_across_mounts": True, "rename_succeeds_once_across_mounts": True, "new_name_opens_at_once": True,
              "flock_excludes_across_mounts": False, "lockf_excludes_across_mounts": False,
              "new_file_listed_at_once": False},
}


def _mounted(point: Path, fstype: str) -> bool:
    proc = subprocess.run(["findmnt", "-n", "-M", str(point), "-t", fstype], capture_output=True, check=False)
    return proc.returncode == 0


@contextmanager
def _rig(name: str):
    """(name, a fresh folder through mount A, the same folder through mount B); removed afterwards."""
    reason = os.environ.get("PIPE_RULES_SHAREDFS_UNAVAILABLE")
    a, b = MNT / f"{name}_a", MNT / f"{name}_b"
    if reason or not (_mounted(a, RIGS[name]) and _mounted(b, RIGS[name])):
        pytest.skip(f"shared-filesystem rig not mounted ({reason or 'run tests/cluster/start_sharedfs.sh as root'})")
    folder = f"t-{uuid.uuid4().hex[:12]}"
    (a / folder).mkdir()
    try:
        yield name, a / folder, b / folder
    finally:  # sshfs: through the server's folder (a mount's listing may lag and leave folders "not empty")
        subprocess.run(["rm", "-rf", str(SSHFS_EXPORT / folder if name == "sshfs" else a / folder)], check=False)


@pytest.fixture(params=sorted(RIGS))
def rig(request):
    with _rig(request.param) as found:
        yield found


def test_rig_has_the_properties_measured(rig):
    name, a, b = rig
    found = probe(a, b)
    assert {k: found[k] for k in EXPECTED[name]} == EXPECTED[name], found


def _stage(folder: Path, n: int, lock_mode: str, **defaults) -> RunLayout:
    settings = {"engine": "noop", "level": "GFN2-xTB", "shards": 4, "lease_s": 2, "heartbeat_s": 0.5,
                "clock_skew_s": 0, "linger_s": 4, "max_attempts": 100, **defaults}
    config = {"campaign": "storm", "run_root": str(folder / "runs"), "lock_mode": lock_mode, "lock_lease_s": 1.0,
              "defaults": settings, "species": h2_species(n), "runs": [{"name": "main", "family": "species_sp"}]}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    campaign = load_campaign(path)
    stage_run(campaign, "main")
    return RunLayout(campaign.run_dir("main"))


def test_lock_mode_is_decided_once_at_staging_from_the_filesystem(rig):
    """`lock_mode: auto` picks from the run folder's filesystem (flock where it excludes across clients,
    GlusterFS; soft where it does not, sshfs), records it in the run record, and a config that later
    names the other mode is refused with one line naming the run record: one run, one lock mode."""
    name, a, _ = rig
    layout = _stage(a, 2, "auto")
    run = read_run(layout)
    assert run.lock_mode == {"gluster": "flock", "sshfs": "soft"}[name], run.filesystem
    assert run.filesystem["type"] == RIGS[name] and run.filesystem["lock_mode"].startswith(f"auto: {run.lock_mode}")
    other = {"flock": "soft", "soft": "flock"}[run.lock_mode]
    config = yaml.safe_load((a / "config.yaml").read_text())
    (a / "config.yaml").write_text(yaml.safe_dump({**config, "lock_mode": other}, sort_keys=False))
    proc = pipe_rules_cli("stage", str(a / "config.yaml"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"run was staged with lock_mode '{run.lock_mode}', the config now says '{other}'" in lines[0], lines[0]
    assert str(layout.root) in lines[0] and read_run(layout).lock_mode == run.lock_mode


_CLAIMER = """
import json, sys, time
from pathlib import Path
from pipe_rules.store.claims import TaskPicker
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.records_io import load_records
from pipe_rules.store.runrecord import read_run
root, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
layout = RunLayout(root)
run = read_run(layout)
picker = TaskPicker(layout, None, run.lock_mode, name, 300)
(go.parent / f"ready.{name}").touch()
while not go.exists():
    time.sleep(0.001)
won = []
while (claim := picker.next_claim()) is not None:
    won.append(claim.task_id)
print(json.dumps(won))
"""


@pytest.mark.parametrize("lock_mode", ["flock", "soft"])
def test_concurrent_claims_from_both_mounts_have_exactly_one_winner(rig, lock_mode, tmp_path):
    """Six claimers, three per mount, each on its own 'node', released at once on 40 tasks: every
    task is claimed by exactly one of them."""
    name, a, b = rig
    layout = _stage(a, 40, lock_mode)
    assert read_run(layout).lock_mode == lock_mode
    go = tmp_path / "go"
    procs = []
    for i in range(6):
        root = layout.root if i % 2 == 0 else b / layout.root.relative_to(a)
        procs.append(subprocess.Popen(
            ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", 'hostname "$0" && exec "$@"',
             f"claimer{i}", PYTHON, "-c", _CLAIMER, str(root), str(go), f"claimer{i}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # released together once every claimer is ready: a claim costs a few ms now, so under load the
    # first one started took all 40 tasks before the others had imported pipe_rules
    wait_until(lambda: all((tmp_path / f"ready.claimer{i}").exists() or procs[i].poll() is not None
                           for i in range(6)), what="claimers ready", timeout=300)
    go.touch()
    won = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        won.append(json.loads(out.strip().splitlines()[-1]))
    claims = Counter(t for w in won for t in w)
    assert sorted(claims) == sorted(manifest_task_ids(layout)) and set(claims.values()) == {1}, claims
    assert sum(1 for w in won if w) >= 2, f"one claimer took everything: {[len(w) for w in won]}"
    for task_id in claims:  # each claim is its one attempt folder until a heartbeat or the end writes it down
        assert os.listdir(layout.attempts_dir(task_id)) == ["0"], task_id
        assert read_state(layout, task_id).status.value == "PENDING" and layout.inflight_token(task_id).exists()


# Each rig in each lock mode, a seed each. Sized for CI (a few minutes for all shared-FS tests on
# the shared 2-core machine); the README's 1,000-task storms are the same tests with
# PIPE_RULES_STORM_TASKS=1000 PIPE_RULES_STORM_KILLS=40 (PIPE_RULES_STORM_SEED shifts the seeds).
STORM_TASKS = int(os.environ.get("PIPE_RULES_STORM_TASKS", "400"))
STORM_KILLS = int(os.environ.get("PIPE_RULES_STORM_KILLS", "30"))
_SEED = int(os.environ.get("PIPE_RULES_STORM_SEED", "0"))
STORMS = [(rig, mode, STORM_TASKS, STORM_KILLS, _SEED + seed)  # (rig, lock mode, tasks, kills, seed)
          for seed, (rig, mode) in enumerate([("gluster", "flock"), ("gluster", "soft"), ("sshfs", "flock"),
                                              ("sshfs", "soft")], start=1)]
STORM_LOG = Path(os.environ.get("PIPE_RULES_STORM_LOG", "/tmp/pipe_rules_storms.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("storm", STORMS, ids=[f"{r}-{m}-seed{s}" for r, m, _, _, s in STORMS])
def test_kill_storm_loses_nothing_and_completes_nothing_twice(storm, tmp_path):
    rig_name, lock_mode, n_tasks, kills, seed = storm
    with _rig(rig_name) as (_, a, b):
        _storm(rig_name, lock_mode, n_tasks, kills, seed, a, b, tmp_path)


def _storm(rig_name, lock_mode, n_tasks, kills, seed, a, b, tmp_path):
    """Staging and the checks afterwards go through the sshfs server's own folder (the same files,
    without sshfs' round trips: they are not what is tested); the storm goes through the two mounts."""
    server = SSHFS_EXPORT / a.relative_to(MNT / "sshfs_a") if rig_name == "sshfs" else a
    # Each task lasts long enough that a full drain by 4 workers takes at least a second per kill
    # (a kill takes ~0.5 s here): the queue outlasts the kills, and many kills land mid-task. With
    # instant tasks the queue emptied first on a quiet machine (19 of 30 kills, sshfs/flock).
    layout = _stage(server, n_tasks, lock_mode, options={"sleep_s": round(kills * 1.0 * 4 / n_tasks, 3)})
    run = read_run(layout)
    on_a, on_b = a / layout.root.relative_to(server), b / layout.root.relative_to(server)
    result = run_storm(on_a, on_b, shards=run.shards, workers=4, kills=kills, seed=seed, log_dir=tmp_path / "logs",
                       exit_deadline_s=run.linger_s + run.lease_s + 60, truth=layout.root)
    states = {t: read_state(layout, t) for t in manifest_task_ids(layout)}
    by_status = Counter(s.status.value for s in states.values())
    twice = [t for t, s in states.items() if [h["to"] for h in s.history].count("COMPLETED") > 1]
    lost = [t for t, s in states.items() if s.status.value != "COMPLETED"]
    summary = {"rig": rig_name, "lock_mode": lock_mode, "tasks": n_tasks, "seed": seed, **result.as_dict(),
               "lost": len(lost), "completed_twice": len(twice), "states": dict(by_status)}
    with open(STORM_LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(summary) + "\n")
    print(json.dumps(summary))
    assert result.kills == kills, summary
    assert not lost and not twice, summary
    assert not result.stuck, f"workers that did not exit by themselves: {summary}"
    assert set(result.exit_codes) <= {0, 137, 143}, summary  # drained, or killed (sh: 128 + 9), or SIGTERM (143)
    # no half-written file: every state version and every result parses
    for task_id in states:
        for attempt in (layout.task_dir(task_id) / "attempts").glob("*/result.json"):
            read_json(attempt, "task result")
    proc = pipe_rules_cli("ingest", str(layout.root))
    assert proc.returncode == 0, proc.stderr
    records = load_records(layout)
    assert records["task_counts"].get("COMPLETED") == n_tasks and not records["failed"], records["task_counts"]
    ingested = {c["task_id"] for o in records["owners"].values() for c in o.get("conformers", [])} | \
        {o.get("task_id") for o in records["owners"].values()}
    assert set(states) <= ingested or len(records["owners"]) == n_tasks, "tasks missing from the records"
