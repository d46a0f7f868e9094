"""Doctor checks of the campaign config and of every engine it uses: each computes a water single
point as a worker would, so a missing library or unknown level fails here, not in the first task."""

from __future__ import annotations

import shutil
import tempfile
from importlib import import_module, metadata
from pathlib import Path

from pipe_rules.cli.doctor_scheduler import FAIL, OK, Check
from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.inputs.campaign import Campaign
from pipe_rules.inputs.config import load_campaign

WATER = {"symbols": ["O", "H", "H"], "isotopes": [16, 1, 1],
         "coords": [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]]}
GEOMETRIC_USERS = {("tblite", "ts_opt"), ("tblite", "irc"), ("pyscf", "conf_opt")}


def check_config(path: Path) -> tuple[Campaign | None, Check]:
    """load_campaign, plus what staging checks per run (engine known, family and level supported)."""
    from pipe_rules.inputs.campaign_checks import check_campaign

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
    return Check(OK, "rdkit", f"RDKit {package_version('rdkit')} embeds conformers from SMILES")


def _importable(module: str, what: str, package: str) -> Check:
    try:
        import_module(module)
    except ImportError as exc:
        return Check(FAIL, package, f"{what}: {exc}", f"pip install {package}")
    return Check(OK, package, f"{what} {package_version(package)}")


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(version unknown)"
