"""`pipe-rules init`: profiles where `snakemake --profile NAME` finds them, a starter config, and a
user's edited copy never overwritten unless asked (--force, after a backup)."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from conftest import PYTHON, pipe_rules_cli
from pipe_rules.host.profiles import installed_profile_text, resolve_profile
from pipe_rules.host.resources import bundled_profiles_dir, snakefile


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "snakemake"


def test_installed_profiles_name_the_package_snakefile_and_its_executor():
    """The cluster profiles name no script: their executor (`pipe-rules`) ships inside the package."""
    for name in ("sge", "pbs", "htcondor", "lsf", "slurm"):
        settings = yaml.safe_load(installed_profile_text(name))
        assert settings["snakefile"] == str(snakefile())
        assert (settings["executor"], settings["pipe-rules-scheduler"]) == ("pipe-rules", name)
        bundled = yaml.safe_load((bundled_profiles_dir() / name / "config.v8+.yaml").read_text())
        assert {k: v for k, v in settings.items() if k != "snakefile"} == bundled


def test_init_writes_updates_keeps_and_forces(tmp_path, xdg):
    env_run = lambda *args: pipe_rules_cli("init", *args, cwd=tmp_path, check=True).stdout  # noqa: E731
    out = env_run()
    slurm = xdg / "slurm" / "config.v8+.yaml"
    assert f"{slurm}: written" in out and f"{tmp_path / 'config.yaml'}: written" in out
    assert env_run().count("already up to date") == 7  # 6 profiles and the config
    # an unedited copy from an older install is updated in place
    slurm.write_text("jobs: 1\n")
    (xdg / "slurm" / ".pipe_rules_init.json").write_text(
        '{"config.v8+.yaml": "%s"}' % __import__("hashlib").sha256(b"jobs: 1\n").hexdigest())
    assert f"{slurm}: updated" in env_run("--profile", "slurm", "--no-config")
    assert slurm.read_text() == installed_profile_text("slurm")
    # an edited copy is kept, also the config.yaml
    slurm.write_text(slurm.read_text() + "jobs: 7\n")
    (tmp_path / "config.yaml").write_text("campaign: mine\n")
    out = env_run()
    assert f"{slurm}: kept" in out and f"{tmp_path / 'config.yaml'}: kept" in out
    assert slurm.read_text().endswith("jobs: 7\n") and (tmp_path / "config.yaml").read_text() == "campaign: mine\n"
    # --force replaces it, after renaming the user's copy to a backup
    out = env_run("--force", "--profile", "slurm")
    assert f"{slurm}: replaced" in out
    assert (xdg / "slurm" / "config.v8+.yaml.bak1").read_text().endswith("jobs: 7\n")
    assert (tmp_path / "config.yaml.bak1").read_text() == "campaign: mine\n"
    assert slurm.read_text() == installed_profile_text("slurm")


def test_unknown_profile_name_is_one_line(tmp_path, xdg):
    proc = pipe_rules_cli("init", "--profile", "torque", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("pipe-rules: error: field '--profile': no bundled profile 'torque' "
                           "(bundled: htcondor, local, lsf, pbs, sge, slurm)\n")


def test_named_profile_prefers_the_installed_copy(tmp_path, xdg):
    assert resolve_profile("local") == bundled_profiles_dir() / "local"
    pipe_rules_cli("init", "--profile", "local", "--no-config", cwd=tmp_path, check=True)
    assert resolve_profile("local") == xdg / "local"
    with pytest.raises(Exception, match="no profile folder 'nowhere' here"):
        resolve_profile("nowhere")


@pytest.mark.slow
def test_plain_snakemake_dry_run_with_the_installed_slurm_profile(tmp_path, xdg):
    """`snakemake --profile slurm` as written, from a folder holding only config.yaml: the profile
    names the Snakefile, so Snakemake builds the campaign's DAG (dry run: nothing is submitted)."""
    pipe_rules_cli("init", cwd=tmp_path, check=True)
    proc = subprocess.run([PYTHON, "-m", "snakemake", "--profile", "slurm", "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stage_run" in proc.stdout and "run_shard" in proc.stdout
