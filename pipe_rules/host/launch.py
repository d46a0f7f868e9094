"""Run a campaign through Snakemake as a subprocess (profiles are read by the CLI only), show its
progress while it works, then show results.

On a terminal, Snakemake's output is relayed line by line above live progress bars (one per run);
elsewhere Snakemake writes straight to our stdout/stderr as before and plain progress lines are
printed every `progress_every` seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.host.profiles import resolve_profile
from pipe_rules.host.resources import snakefile
from pipe_rules.host.workflow_support import staged_as_configured
from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.campaign_checks import check_campaign
from pipe_rules.reporting.progress import CampaignProgress
from pipe_rules.reporting.report_table import print_table, results_table
from pipe_rules.store.fsio import read_json
from pipe_rules.store.handback import handback_marker
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.records_io import load_records, results_exist

RESULTS_TABLE_OWNERS = 1000  # owners in the table printed after a run (all are in records.jsonl)

INTERRUPT_GRACE_S = 30.0  # how long Snakemake may take to stop its jobs after Ctrl-C
HANDBACK_RERUNS = 2  # Snakemake passes after ingestion handed unfinished tasks back to the cluster


def snakemake_command(config: Path, profile: str | Path, extra: list[str] | None = None) -> list[str]:
    """The package's own Snakefile (found through importlib.resources), so this runs from any folder."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile()), "--configfile", str(config),
            "--profile", str(resolve_profile(profile)), *(extra or [])]


def _relayed(command: list[str], console: Console) -> int:
    """Run Snakemake with its output printed through `console` (above the live bars)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", bufsize=1, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            console.print(Text(line.rstrip("\n")), highlight=False, soft_wrap=True)
        return proc.wait()
    except KeyboardInterrupt:
        _finish_after_interrupt(proc, console)
        raise


def _inherited(command: list[str]) -> int:
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _finish_after_interrupt(proc)
        raise


def _finish_after_interrupt(proc: subprocess.Popen, console: Console | None = None) -> None:
    """Snakemake got the SIGINT too: let it stop its jobs (printing the rest of its output), then kill it."""
    try:
        rest, _ = proc.communicate(timeout=INTERRUPT_GRACE_S)
        if rest and console is not None:
            console.print(Text(rest.rstrip("\n")), highlight=False, soft_wrap=True)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()


def _handback_stamp(layout: RunLayout) -> int | None:
    """When this run's ingestion last handed tasks back (store/handback.py), or None."""
    try:
        return handback_marker(layout).stat().st_mtime_ns
    except OSError:
        return None


def run_campaign(config: Path, profile: str | Path = "local", extra: list[str] | None = None,
                 progress_every: float = 30.0, tty: bool | None = None) -> int:
    """`progress_every`: seconds between plain progress lines when stdout is not a terminal (0: none).
    `tty`: force the terminal display on or off (default: whether stdout is a terminal)."""
    campaign = load_campaign(config)  # fail fast, with one line, before Snakemake starts
    fresh = [run.name for run in campaign.runs if staged_as_configured(campaign, run)]
    check_campaign(campaign, fresh)  # the same line `pipe-rules stage` gives (chemistry included)
    command = snakemake_command(config, profile, extra)
    print("running:", " ".join(command), flush=True)
    tty = sys.stdout.isatty() if tty is None else tty
    console = Console(force_terminal=True) if tty else Console()
    runs = [(run.name, RunLayout(campaign.run_dir(run.name))) for run in campaign.runs]
    started, began = time.perf_counter(), time.time()
    with CampaignProgress(runs, console, tty=tty, every=progress_every):
        for rerun in range(HANDBACK_RERUNS + 1):
            before = {name: _handback_stamp(layout) for name, layout in runs}
            code = _relayed(command, console) if tty else _inherited(command)
            handed = [name for name, layout in runs if _handback_stamp(layout) not in (None, before[name])]
            if code == 0 or not handed or rerun == HANDBACK_RERUNS:
                break
            print(f"ingestion handed unfinished tasks of {', '.join(handed)} back to the cluster: running "
                  "snakemake again (it submits an array element per such shard)", flush=True)
    elapsed = time.perf_counter() - started
    staged, errors = _rule_lines(runs, began)
    for line in staged:
        print(f"staged {line}")
    for _, layout in runs:
        if results_exist(layout):
            try:
                print_table(results_table(load_records(layout, max_owners=RESULTS_TABLE_OWNERS)))
            except PipeRulesError as exc:  # shown, but the rules' own errors below are the point
                print(f"pipe-rules: cannot show {exc}", file=sys.stderr)
        report = layout.results_dir / "report.html"
        if report.exists():
            print(f"report: {report}")
    print(f"campaign {campaign.name}: snakemake exited {code} after {elapsed:.1f} s")
    for line in errors:  # what the failing rule said in its log, as `pipe-rules stage` would
        print(line, file=sys.stderr)
    return 2 if code != 0 and errors else code


def _rule_lines(runs: list[tuple[str, RunLayout]], since: float) -> tuple[list[str], list[str]]:
    """Staging lines of the runs (re)staged by this invocation (from staged.json), and the
    `pipe-rules: error:` lines rules wrote into their logs during it."""
    staged, errors = [], []
    for _, layout in runs:
        marker = layout.root / "staged.json"
        try:
            if marker.stat().st_mtime >= since - 1.0:
                line = read_json(marker, "staging summary").get("line")
                if line:
                    staged.append(line)
        except (OSError, PipeRulesError, AttributeError):
            pass
        for log in sorted(layout.logs_dir.rglob("*.log")) if layout.logs_dir.is_dir() else ():
            try:
                if log.stat().st_mtime < since - 1.0:
                    continue
                errors += [line for line in log.read_text(errors="replace").splitlines()
                           if line.startswith("pipe-rules: error:")]
            except OSError:
                continue
    return staged, list(dict.fromkeys(errors))
