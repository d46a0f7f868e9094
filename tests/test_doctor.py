"""`pipe-rules doctor`: what a user sees before submitting, on real engines, real commands (or
their absence from PATH), a real read-only filesystem and a real flock."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PYTHON, REPO, mounted_tmpfs, tblite_energy, write_config

from pipe_rules.cli.doctor_scheduler import FAIL, OK, WARN
from pipe_rules.cli.doctor import run_doctor
from pipe_rules.cli.doctor_storage import filesystem_check, mount_of
from pipe_rules.cli.main import main

VENV_BIN = str(Path(sys.executable).parent)
FAKES = REPO / "tests" / "fake_schedulers"
WATER = {"symbols": ["O", "H", "H"], "coords": [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]]}


def doctor_cli(*args: str, cwd: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if path is not None:
        env["PATH"] = path
    return subprocess.run([PYTHON, "-m", "pipe_rules", "doctor", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def by_name(checks) -> dict[str, list]:
    found: dict[str, list] = {}
    for check in checks:
        found.setdefault(check.name, []).append(check)
    return found


def noop_config(folder: Path, **run_settings) -> Path:
    return write_config(folder, n_tasks=2, engine="noop", **run_settings)


def test_local_profile_and_the_repo_config_are_all_ok(tmp_path, monkeypatch, capsys):
    checks = run_doctor("local", REPO / "config.yaml", cwd=tmp_path)
    assert [c.line() for c in checks if c.status != OK] == []
    found = by_name(checks)
    assert {"profile", "executor", "scheduler", "config", "engine tblite", "rdkit", "run folder", "filesystem",
            "free space", "flock"} <= set(found)
    # the demo config uses GFN2-xTB and GFN1-xTB: each level really computed water
    details = " ".join(c.detail for c in found["engine tblite"])
    for level in ("GFN2-xTB", "GFN1-xTB"):
        energy = float(re.search(rf"{level} single point of water (-?\d+\.\d+) Eh", details).group(1))
        assert energy == pytest.approx(tblite_energy(WATER, level), abs=2e-6)
    assert found["run folder"][0].detail == f"{tmp_path} is writable ({tmp_path / 'runs' / 'demo'} will be created there)"
    assert found["flock"][0].detail == "works here (a second lock on the same file was refused)"
    assert list(tmp_path.iterdir()) == []  # the probes cleaned up after themselves
    monkeypatch.chdir(tmp_path)
    assert main(["doctor", "local", "--config", str(REPO / "config.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("OK    profile: ") and out.rstrip().endswith("0 failed, 0 warning(s)")


def test_unknown_profile_fails_with_the_names_that_exist(tmp_path):
    proc = doctor_cli("no_such_profile", "--config", str(REPO / "config.yaml"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    names = ", ".join(sorted(p.name for p in (REPO / "profiles").iterdir() if p.is_dir()))
    from pipe_rules.host.profiles import user_profiles_dir

    assert (f"FAIL  profile: no profile folder 'no_such_profile' here, in {user_profiles_dir()} or among the "
            f"bundled profiles ({names}); fix: give a profile folder or one of: {names}") in proc.stdout.splitlines()
    assert "slurm" in names and "local" in names
    assert proc.stdout.rstrip().endswith("1 failed, 0 warning(s)")


def test_slurm_profile_without_the_slurm_commands_on_path_fails_naming_them(tmp_path):
    """A real SLURM may be installed in /usr/bin: PATH holds only the venv's bin folder, plus `which`."""
    config = noop_config(tmp_path)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "which").symlink_to(shutil.which("which"))
    proc = doctor_cli("slurm", "--config", str(config), cwd=tmp_path, path=f"{VENV_BIN}{os.pathsep}{tools}")
    assert proc.returncode == 1, proc.stderr
    assert ("FAIL  scheduler commands: sbatch, squeue, scancel, sinfo not on PATH (the slurm profile needs sbatch, "
            "squeue, scancel, sinfo); fix: load the SLURM client tools (e.g. `module load slurm`) or run this on the "
            "cluster's login node") in proc.stdout.splitlines()
    assert "OK    executor: pipe-rules (pipe_rules " in proc.stdout  # the plugin is not the problem


def test_pbs_htcondor_and_lsf_commands_and_array_limits_are_probed_once(tmp_path, monkeypatch):
    """Fake qsub/qstat/condor_*/b* (tests/fake_schedulers) stand in for servers that cannot run here."""
    log = tmp_path / "fake.log"
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{FAKES}")
    monkeypatch.setenv("FAKE_SCHEDULER_LOG", str(log))
    (tmp_path / "bparams.txt").write_text("System default parameters:\n  MAX_JOB_ARRAY_SIZE = 2\n")
    monkeypatch.setenv("FAKE_BPARAMS_OUTPUT", str(tmp_path / "bparams.txt"))
    config = noop_config(tmp_path, shards=3)
    for profile, probe in (("pbs", ["qstat", "-B"]), ("htcondor", ["condor_q", "-totals"]), ("lsf", ["bqueues"])):
        found = by_name(run_doctor(profile, config, cwd=tmp_path))
        assert [c.status for c in found["scheduler commands"] + found["scheduler"]] == [OK] * 2
        assert found["scheduler"][0].detail == f"`{' '.join(probe)}` answered"
        assert found["executor"][0].detail.startswith("pipe-rules (pipe_rules ")
    arrays = found["arrays"][0]  # LSF: at most 2 elements per array, a run asks for 3 shards
    assert (arrays.status, arrays.detail) == (WARN, "`bparams -a`: MAX_JOB_ARRAY_SIZE = 2, but a run asks for 3 shards: "
                                                    "it is split into 2 submissions")
    assert by_name(run_doctor("htcondor", config, cwd=tmp_path))["arrays"][0].status == OK
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [[c["cmd"], *c["args"]] for c in calls] == [["qstat", "-B"], ["qstat", "-B", "-f"], ["condor_q", "-totals"],
                                                        ["bqueues"], ["bparams", "-a"], ["condor_q", "-totals"]]
    found = by_name(run_doctor("pbs", config, cwd=tmp_path))  # the fake's qstat -B -f says nothing
    assert found["arrays"][0].status == WARN and "assuming pbs's default largest array, 10000" in found["arrays"][0].detail
    monkeypatch.setenv("FAKE_QSTAT_RC", "3")  # the server refuses
    found = by_name(run_doctor("pbs", config, cwd=tmp_path))
    assert found["scheduler"][0].status == FAIL and found["scheduler"][0].detail.startswith("`qstat -B` exited 3")


def _sinfo_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slurm
@pytest.mark.skipif(not _sinfo_answers(), reason="no SLURM controller answering sinfo (tests/cluster/start_slurm.sh)")
def test_slurm_partition_that_does_not_exist_fails(tmp_path):
    config = noop_config(tmp_path, partition="no_such_partition")
    found = by_name(run_doctor("slurm", config, cwd=tmp_path))
    assert found["scheduler"][0].status == OK
    [check] = found["partition"]
    assert check.status == FAIL and check.detail.startswith("no_such_partition not listed by sinfo (partitions: ")


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody may write: a read-only tmpfs for root (who ignores modes), mode 555 otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "ro,size=64k", "a read-only tmpfs"):
        yield folder


def test_unwritable_run_folder_fails(tmp_path, read_only_folder):
    config = noop_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["run_root"] = str(read_only_folder)
    config.write_text(yaml.safe_dump(data))
    found = by_name(run_doctor("local", config, cwd=tmp_path))
    [check] = found["run folder"]
    assert check.status == FAIL
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert check.detail == f"cannot write in {read_only_folder} ({reason}), so {read_only_folder / 'test'} cannot be created"
    assert "set run_root in the campaign config" in check.fix
    assert "flock" not in found  # nothing to try flock on


def test_run_root_blocked_by_a_file_fails(tmp_path):
    config = noop_config(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    [check] = by_name(run_doctor("local", config, cwd=tmp_path))["run folder"]
    assert (check.status, check.detail) == (FAIL, f"{tmp_path / 'runs'} is in the way of {tmp_path / 'runs' / 'test'} "
                                                  "(not a folder)")


def external_config(folder: Path, command: list[str]) -> Path:
    options = {"command": command, "input_template": "! HF\n* xyz {charge} {multiplicity}\n{xyz}\n*\n",
               "output": "program.stdout"}
    config = write_config(folder, n_tasks=1, engine="external", level="hf/sto-3g", options=options)
    return config


def test_external_engine_binary_missing_from_path_fails(tmp_path):
    found = by_name(run_doctor("local", external_config(tmp_path, ["no_such_qc_program", "{input}"]), cwd=tmp_path))
    [check] = found["engine external"]
    assert check.line() == ("FAIL  engine external: 'no_such_qc_program' (runs.0.options.command) is not on PATH here; "
                            "fix: install it or load its module before `pipe-rules run`, add the same line to the job's "
                            "set-up file (--setup-file / PIPE_RULES_JOB_SETUP), or give its full path in options.command")
    assert found["cclib"][0].status == OK
    found = by_name(run_doctor("local", external_config(tmp_path, [sys.executable, "{input}"]), cwd=tmp_path))
    assert found["engine external"][0].status == OK and sys.executable in found["engine external"][0].detail


def test_invalid_config_fails_with_the_field_and_skips_what_depends_on_it(tmp_path):
    config = noop_config(tmp_path)
    config.write_text(config.read_text().replace("family: species_sp", "family: species_spp"))
    found = by_name(run_doctor("local", config, cwd=tmp_path))
    [check] = found["config"]
    assert check.status == FAIL
    assert check.detail.startswith(f"{config}: field 'runs.0.family': 'species_spp' is not one of: conf_opt,")
    assert not {"run folder", "engine noop"} & set(found)
    found = by_name(run_doctor("local", tmp_path / "missing.yaml", cwd=tmp_path))
    assert found["config"][0].status == FAIL and "cannot read the campaign config" in found["config"][0].detail


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
fs1:/export/home /home nfs4 rw,relatime,vers=4.2,hard 0 0
10.0.0.1@tcp:/scratch /scratch lustre rw,localflock 0 0
/dev/sdb1 /mnt/my\\040disk xfs rw 0 0
"""


MOUNTS_MORE = MOUNTS + """\
mds@tcp:/old /old lustre rw 0 0
fs1:/export/nl /nl nfs4 rw,local_lock=flock 0 0
root@login:/data /sshfs fuse.sshfs rw,nosuid 0 0
vm:/gv /gluster fuse.glusterfs rw,allow_other 0 0
"""


def test_lock_mode_against_what_each_filesystem_does_with_flock():
    assert mount_of(Path("/home/alice/runs"), MOUNTS) == ("/home", "nfs4", "rw,relatime,vers=4.2,hard")
    assert mount_of(Path("/homework"), MOUNTS)[1] == "ext4"  # a prefix of the name is not a parent folder
    assert mount_of(Path("/mnt/my disk/runs"), MOUNTS)[1] == "xfs"
    check = lambda path, mode: filesystem_check(Path(path), MOUNTS_MORE, mode)  # noqa: E731
    # NFS without local_lock sends flock to the server: flock is fine; GlusterFS was measured coherent
    assert check("/home/alice/runs", "flock").status == OK and check("/gluster/runs", "flock").status == OK
    assert "-> flock" in check("/gluster/runs", "auto").detail
    # flock that only excludes within a node: a WARN, and auto picks soft
    for path, why in (("/scratch/runs", "localflock: flock excludes only within one node"),
                      ("/nl/runs", "local_lock"), ("/sshfs/runs", "flock does not exclude across mounts")):
        warn = check(path, "flock")
        assert warn.status == WARN and why in warn.detail and "lock_mode: soft" in warn.fix, warn.line()
        assert check(path, "auto").status == OK and "-> soft" in check(path, "auto").detail
        assert check(path, "soft").status == OK
    # Lustre without flock refuses flock: lock_mode flock there is a FAIL, never a silent fallback
    fail = check("/old/runs", "flock")
    assert fail.status == FAIL and "flock is refused" in fail.detail and "lock_mode: auto" in fail.fix
    assert check("/old/runs", "auto").status == OK and check("/data/runs", "flock").status == OK
