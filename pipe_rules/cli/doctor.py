"""`pipe-rules doctor PROFILE`: check, before a campaign is submitted, what would otherwise fail
minutes or hours later on a node: the profile and its executor plugin, the scheduler's commands,
the campaign config, the engines it uses (each computes a water single point), and the run folder
(writable, free space, filesystem type, whether flock really excludes there).

One line per check, OK / WARN / FAIL with the fix; exit code 1 if anything FAILs. Nothing is
submitted and nothing is staged: the only files written are temporary ones, removed again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

import yaml

from pipe_rules.cli.doctor_scheduler import FAIL, OK, WARN, Check, check_scheduler
from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.host.profiles import resolve_profile
from pipe_rules.host.resources import bundled_profile_names
from pipe_rules.inputs.campaign import Campaign
from pipe_rules.inputs.config import load_campaign

PROFILE_FILE = "config.v8+.yaml"
NETWORK_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "fuse.glusterfs")
WARN_FREE_BYTES, FAIL_FREE_BYTES = 1 << 30, 50 << 20
WARN_FREE_INODES = 100_000  # a task folder costs about six inodes
WATER = {"symbols": ["O", "H", "H"], "isotopes": [16, 1, 1],
         "coords": [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]]}
GEOMETRIC_USERS = {("tblite", "ts_opt"), ("tblite", "irc"), ("pyscf", "conf_opt")}


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
    version = _version("snakemake")
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
        return Check(OK, "executor", f"pipe-rules (pipe_rules {_version('pipe_rules')}) with snakemake {version}")
    return Check(OK, "executor", f"{package} {_version(package)} with snakemake {version}")


def check_config(path: Path) -> tuple[Campaign | None, Check]:
    """load_campaign, plus what staging checks per run (engine known, family and level supported)."""
    from pipe_rules.inputs.staging import check_campaign

    try:
        campaign = load_campaign(path)
        check_campaign(campaign)
    except PipeRulesError as exc:
        return None, Check(FAIL, "config", f"{exc} (engines and run folder not checked)",
                           "correct that field; the schema describes every key (README: Config reference)")
    runs = ", ".join(f"{r.name} ({r.family}, {r.engine} {r.level})" for r in campaign.runs)
    return campaign, Check(OK, "config", f"{path} valid: campaign {campaign.name!r}, runs {runs}")


def check_engines(campaign: Campaign) -> list[Check]:
    checks = []
    levels: dict[str, list[str]] = {}
    for run in campaign.runs:
        levels.setdefault(run.engine, [])
        if run.level not in levels[run.engine]:
            levels[run.engine].append(run.level)
    for engine, engine_levels in levels.items():
        if engine in ("tblite", "pyscf"):
            checks += [_water_single_point(engine, level) for level in engine_levels]
        elif engine == "external":
            checks += [_external_binary(campaign, index) for index, run in enumerate(campaign.runs)
                       if run.engine == "external"]
            checks.append(_importable("cclib", "cclib (reads the programs' logs)", "cclib"))
        else:
            checks.append(Check(OK, f"engine {engine}", "computes nothing (benchmarks, fault injection)"))
    if any(s.structure for s in campaign.species):
        checks.append(_rdkit())
    if any((run.engine, run.family) in GEOMETRIC_USERS for run in campaign.runs):
        checks.append(_importable("geometric", "geomeTRIC (saddle points, IRCs, PySCF optimisations)", "geometric"))
    return checks


def _water_single_point(engine: str, level: str) -> Check:
    """The real engine, as a worker calls it, on water: catches missing libraries, broken builds
    (OpenMP, BLAS) and unknown levels or basis sets before the first task does."""
    from pipe_rules.engines import get_engine

    try:
        with tempfile.TemporaryDirectory(prefix="pipe_rules_doctor_") as workdir:
            result = get_engine(engine).run("species_sp", level, {"xyz": WATER, "charge": 0, "multiplicity": 1},
                                            {}, Path(workdir), 1)
        version = get_engine(engine).version()
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        return Check(FAIL, f"engine {engine}", f"{level} single point of water failed: {type(exc).__name__}: "
                     f"{' '.join(str(exc).split())}", f"pip install {engine} into this environment (and the jobs')")
    return Check(OK, f"engine {engine}", f"version {version}, {level} single point of water "
                 f"{result.energy_hartree:.6f} Eh")


def _external_binary(campaign: Campaign, index: int) -> Check:
    command = campaign.runs[index].options.get("command")
    where = f"runs.{index}.options.command"
    if not (isinstance(command, list) and command and isinstance(command[0], str) and command[0]):
        return Check(FAIL, "engine external", f"{where} must be an argv list such as [\"g16\", \"{{input}}\"]",
                     "set options.command of that run (or in defaults)")
    found = shutil.which(command[0])
    if found is None:
        return Check(FAIL, "engine external", f"{command[0]!r} ({where}) is not on PATH here",
                     "install it or load its module before `pipe-rules run`, add the same line to the job's "
                     "set-up file (--setup-file / PIPE_RULES_JOB_SETUP), or give its full path in options.command")
    return Check(OK, "engine external", f"{command[0]} found at {found} ({where})")


def _rdkit() -> Check:
    from pipe_rules.inputs.chem import embed_conformers

    try:
        embed_conformers("O", 1)
    except Exception as exc:  # noqa: BLE001 - any failure here is the finding
        return Check(FAIL, "rdkit", f"cannot embed water from SMILES: {type(exc).__name__}: {exc}", "pip install rdkit")
    return Check(OK, "rdkit", f"RDKit {_version('rdkit')} embeds conformers from SMILES")


def _importable(module: str, what: str, package: str) -> Check:
    try:
        import_module(module)
    except ImportError as exc:
        return Check(FAIL, package, f"{what}: {exc}", f"pip install {package}")
    return Check(OK, package, f"{what} {_version(package)}")


def check_run_folder(campaign: Campaign, cwd: Path) -> list[Check]:
    folder = campaign.run_root / campaign.name
    folder = folder if folder.is_absolute() else cwd / folder
    existing = folder
    while not existing.is_dir():  # staging creates the rest; test where it will start creating
        if existing.exists() or existing == existing.parent:
            return [Check(FAIL, "run folder", f"{existing} is in the way of {folder} (not a folder)",
                          "set run_root in the campaign config to a folder you can write")]
        existing = existing.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".pipe_rules_doctor.", dir=existing)
    except OSError as exc:
        return [Check(FAIL, "run folder", f"cannot write in {existing} ({exc.strerror}), so {folder} "
                      "cannot be created", "set run_root in the campaign config to a folder you can write, on a "
                      "filesystem the compute nodes share")]
    try:
        checks = [Check(OK, "run folder", f"{existing} is writable" + ("" if existing == folder else f" ({folder} "
                        "will be created there)"))]
        checks.append(_filesystem(existing, campaign.lock_mode))
        checks.append(_free_space(existing))
        checks.append(_flock(fd, probe, campaign.lock_mode))
    finally:
        os.close(fd)
        os.unlink(probe)
    return checks


def mount_of(path: Path, mounts_text: str) -> tuple[str, str, str]:
    """(mount point, filesystem type, options) of the mount holding `path`, from /proc/mounts text."""
    best = ("/", "unknown", "")
    target = os.path.realpath(path)
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])  # \040 is a space
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fields[2], fields[3])
    return best


def filesystem_check(path: Path, mounts_text: str, lock_mode: str) -> Check:
    point, fstype, options = mount_of(path, mounts_text)
    where = f"{path} is on {fstype} (mounted at {point})"
    if fstype not in NETWORK_FS:
        return Check(OK, "filesystem", where)
    if lock_mode == "soft":
        return Check(OK, "filesystem", f"{where}; lock_mode soft (O_EXCL marker locks) suits it")
    if fstype == "lustre":
        flags = options.split(",")
        how = ("mounted with flock (coherent across nodes, if the servers allow it)" if "flock" in flags else
               "mounted with localflock: flock excludes only within one node" if "localflock" in flags else
               "mounted without flock: flock is refused there and filelock falls back to soft locks")
        return Check(WARN, "filesystem", f"{where}, {how}",
                     "with workers on several nodes set lock_mode: soft in the campaign config")
    return Check(WARN, "filesystem", f"{where}: flock may not exclude across {fstype} clients",
                 "with workers on several nodes set lock_mode: soft in the campaign config (O_EXCL marker locks)")


def _filesystem(path: Path, lock_mode: str) -> Check:
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        return Check(WARN, "filesystem", "cannot read /proc/mounts: filesystem type unknown",
                     "check by hand that flock works on the run folder, or set lock_mode: soft")
    return filesystem_check(path, mounts, lock_mode)


def _free_space(path: Path) -> Check:
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    detail = f"{free / 1e9:.1f} GB free" + (f", {stat.f_favail:,} inodes free" if stat.f_files else "")
    fix = "free space there or move run_root (each task writes a few small files per attempt)"
    if free < FAIL_FREE_BYTES:
        return Check(FAIL, "free space", detail, fix)
    if free < WARN_FREE_BYTES or (stat.f_files and stat.f_favail < WARN_FREE_INODES):
        return Check(WARN, "free space", detail, fix)
    return Check(OK, "free space", detail)


def _flock(fd: int, probe: str, lock_mode: str) -> Check:
    """Take flock on one file descriptor, then try again through a second one: it must be refused."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if lock_mode == "soft":
            return Check(OK, "flock", f"refused here ({exc.strerror}); lock_mode soft does not need it")
        return Check(WARN, "flock", f"refused here ({exc.strerror}): lock_mode flock falls back to soft locks",
                     "set lock_mode: soft in the campaign config to say so explicitly")
    other = os.open(probe, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return Check(WARN, "flock", "a second flock on the same file was granted: flock does not exclude here",
                     "set lock_mode: soft in the campaign config")
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
    finally:
        os.close(other)
    return Check(OK, "flock", "works here (a second lock on the same file was refused)")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


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
