"""`pipe-rules doctor PROFILE`: check, before a campaign is submitted, what would otherwise fail
minutes or hours later on a node: the profile and its executor plugin, the scheduler's commands,
the campaign config, the engines it uses (each computes a water single point), and the run folder
(writable, free space, filesystem type, whether flock really excludes there).

One line per check, OK / WARN / FAIL with the fix; exit code 1 if anything FAILs. Nothing is
submitted and nothing is staged: the only files written are temporary ones, removed again.
This module checks the profile and its executor; `doctor_scheduler` the batch system,
`doctor_engines` the config and its engines, `doctor_storage` the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import yaml

from pipe_rules.cli.doctor_engines import check_config, check_engines, package_version
from pipe_rules.cli.doctor_scheduler import FAIL, OK, WARN, Check, check_scheduler
from pipe_rules.cli.doctor_storage import check_run_folder
from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.host.profiles import resolve_profile
from pipe_rules.host.resources import bundled_profile_names

PROFILE_FILE = "config.v8+.yaml"


@dataclass(frozen=True)
class Profile:
    folder: Path
    settings: dict[str, Any]

    @property
    def executor(self) -> str:
        return str(self.settings.get("executor", "local"))

    @property
    def scheduler(self) -> str | None:
        """local, or the batch system of the `pipe-rules` executor (the official SLURM and HTCondor
        plugins are recognised too); None for an executor this project has no profile for."""
        if self.executor == "pipe-rules":
            return str(self.settings.get("pipe-rules-scheduler") or "") or None
        return self.executor if self.executor in ("local", "slurm", "htcondor", "lsf") else None


def run_doctor(profile: str, config: Path | str, cwd: Path | None = None) -> list[Check]:
    """Every check, in the order a submission would hit them. `cwd`: where snakemake will run
    (a relative run_root is resolved from there)."""
    checks, loaded = check_profile(profile)
    campaign, config_check = check_config(Path(config))
    if loaded is not None:
        checks.append(check_executor(loaded))
        partitions = sorted({r.partition for r in campaign.runs if r.partition}) if campaign else []
        max_shards = max((r.shards for r in campaign.runs), default=0) if campaign else 0
        checks += check_scheduler(loaded.scheduler, partitions, max_shards)
    checks.append(config_check)
    if campaign is not None:
        checks += check_engines(campaign)
        checks += check_run_folder(campaign, cwd or Path.cwd())
    return checks


def check_profile(name: str) -> tuple[list[Check], Profile | None]:
    try:
        folder = resolve_profile(name)
    except PipeRulesError as exc:
        names = ", ".join(bundled_profile_names())
        return [Check(FAIL, "profile", exc.message, f"give a profile folder or one of: {names}")], None
    path = folder / PROFILE_FILE
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [Check(FAIL, "profile", f"cannot read {path}: {' '.join(str(exc).split())}",
                      f"a Snakemake 9 profile needs a valid {PROFILE_FILE} in {folder}")], None
    if not isinstance(settings, dict):
        return [Check(FAIL, "profile", f"{path} is not a mapping of Snakemake options",
                      "write one option per line, e.g. `executor: slurm`")], None
    loaded = Profile(folder.resolve(), settings)
    return [Check(OK, "profile", f"{path} parses (executor {loaded.executor}, scheduler {loaded.scheduler})")], loaded


def check_executor(profile: Profile) -> Check:
    version = package_version("snakemake")
    if profile.executor == "local":
        return Check(OK, "executor", f"local (built into snakemake {version})")
    module = "snakemake_executor_plugin_" + profile.executor.replace("-", "_")
    package = module.replace("_", "-")
    try:
        import_module(module)
    except ImportError as exc:
        return Check(FAIL, "executor", f"plugin {module} for executor {profile.executor!r} is not importable ({exc})",
                     f"pip install {package}" if profile.executor != "pipe-rules" else
                     "reinstall pipe_rules: the plugin ships with it (snakemake_executor_plugin_pipe_rules)")
    except Exception as exc:  # noqa: BLE001 - the SLURM plugin runs `which` at import time, for one
        return Check(FAIL, "executor", f"plugin {module} fails on import: {type(exc).__name__}: {exc}",
                     "run from a login shell with the usual PATH (coreutils, which) and the scheduler's tools")
    if profile.executor == "pipe-rules":  # shipped inside pipe_rules (pipe_rules/schedulers/)
        return Check(OK, "executor", f"pipe-rules (pipe_rules {package_version('pipe_rules')}) with snakemake {version}")
    return Check(OK, "executor", f"{package} {package_version(package)} with snakemake {version}")


def print_report(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.markup import escape

    colour = {OK: "green", WARN: "yellow", FAIL: "bold red"}
    console = Console(highlight=False, soft_wrap=True)
    for check in checks:
        rest = check.line()[len(check.status):]
        console.print(f"[{colour[check.status]}]{check.status}[/]{escape(rest)}")
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    console.print(f"{len(checks)} checks: {failed} failed, {warned} warning(s)")
