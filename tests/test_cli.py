"""Command-line plumbing that users type by hand: pass-through of snakemake arguments."""

from __future__ import annotations

from pathlib import Path

from conftest import pipe_rules_cli, write_config


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
