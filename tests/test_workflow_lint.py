"""The workflow passes `snakemake --lint` (run as the lint step of tests/run_tests.sh, before any
other test; `snakefmt --check` is its format step) and its DAG grows with shards, never with tasks."""

import re
import subprocess

import pytest
from conftest import PYTHON, REPO, write_config


def test_snakemake_lint_is_clean(tmp_path):
    """One lint is expected and accepted, once per rule: no `conda:` directive. The rules run
    pipe_rules itself in the environment that runs snakemake (README: "Software environment"), so
    a per-rule conda environment would have nothing of its own to install. Any other lint fails."""
    write_config(tmp_path, 2)
    proc = subprocess.run([PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                           "--configfile", "config.yaml", "--lint"], cwd=tmp_path, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    rules = re.findall(r"^Lints for rule (\w+) ", out, flags=re.M)
    lints = re.findall(r"^\s+\* (.+?):?$", out, flags=re.M)
    assert sorted(rules) == ["ingest_run", "run_shard", "stage_run"], out
    assert lints == ["Specify a conda environment or container for each rule."] * 3, out
    assert "Lints for snakefile" not in out, out


@pytest.mark.slow
def test_dry_run_builds_a_small_dag(tmp_path):
    """Stage -> shards -> ingest: the DAG grows with shards, never with tasks."""
    write_config(tmp_path, 50, shards=3)
    proc = subprocess.run([PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
                           "--configfile", "config.yaml", "--dry-run", "--cores", "1"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stats = dict(line.split() for line in proc.stdout.split("Job stats:")[1].splitlines()[3:8])
    assert stats == {"stage_run": "1", "run_shard": "3", "ingest_run": "1", "all": "1", "total": "6"}
