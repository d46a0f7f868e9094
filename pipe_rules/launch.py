"""Run a campaign through Snakemake as a subprocess (profiles are read by the CLI only), then show results."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .config import load_campaign
from .errors import ConfigError
from .fsio import read_json
from .layout import RunLayout
from .report_table import print_table, results_table

PROJECT = Path(__file__).resolve().parent.parent
WORKFLOW = PROJECT / "workflow" / "Snakefile"


def resolve_profile(profile: str | Path) -> Path:
    """A profile path as given, or a name from the project's profiles/ folder."""
    given = Path(profile)
    if given.is_dir():
        return given
    bundled = PROJECT / "profiles" / str(profile)
    if bundled.is_dir():
        return bundled
    raise ConfigError(f"no profile folder {profile!r} here or in {PROJECT / 'profiles'}", field="--profile")


def snakemake_command(config: Path, profile: str | Path, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(WORKFLOW), "--configfile", str(config),
            "--profile", str(resolve_profile(profile)), *(extra or [])]


def run_campaign(config: Path, profile: str | Path = "local", extra: list[str] | None = None) -> int:
    campaign = load_campaign(config)  # fail fast, with one line, before Snakemake starts
    command = snakemake_command(config, profile, extra)
    print("running:", " ".join(command), flush=True)
    started = time.perf_counter()
    code = subprocess.call(command)
    elapsed = time.perf_counter() - started
    for run in campaign.runs:
        layout = RunLayout(campaign.run_dir(run.name))
        if layout.records.exists():
            print_table(results_table(read_json(layout.records, "ingested results")))
    print(f"campaign {campaign.name}: snakemake exited {code} after {elapsed:.1f} s")
    return code
