"""Command-line plumbing that users type by hand: pass-through of snakemake arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import pipe_rules_cli, write_config


@pytest.mark.slow
def test_arguments_after_double_dash_reach_snakemake(tmp_path: Path):
    config = write_config(tmp_path, 2)
    proc = pipe_rules_cli("run", str(config), "--profile", "local", "--", "-n", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "This was a dry-run" in proc.stdout + proc.stderr
    assert not (tmp_path / "runs" / "main").exists(), "a dry run must not stage anything"


def test_double_dash_on_another_command_is_refused_with_the_reason(tmp_path: Path):
    proc = pipe_rules_cli("status", str(tmp_path), "--", "-n", cwd=tmp_path)
    assert proc.returncode == 2
    assert "arguments after '--' (-n) are only for 'pipe-rules run'" in proc.stderr


def test_a_config_yaml_in_the_working_folder_does_not_leak_into_another_campaign(tmp_path: Path):
    """Snakemake merges --configfile into the Snakefile's default config.yaml unless the profile says not to."""
    (tmp_path / "config.yaml").write_text("campaign: other\ndefaults: {cores: 2, shards: 5}\nspecies: []\nruns: []\n")
    (tmp_path / "elsewhere").mkdir()
    config = write_config(tmp_path / "elsewhere", 2)
    proc = pipe_rules_cli("run", str(config), "--profile", "local", "--", "-n", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "shard=shard-001" in out and "shard=shard-004" not in out  # 2 shards, not config.yaml's 5
    assert "threads: 2" not in out
