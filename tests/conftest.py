"""Shared helpers: small real campaigns on the noop engine (for the machinery) or tblite (chemistry)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from pipe_rules.inputs.config import load_campaign
from pipe_rules.inputs.staging import stage_run
from pipe_rules.store.layout import RunLayout

REPO = Path(__file__).resolve().parent.parent

# Profiles that `pipe-rules init` installed for the person running the tests live in
# $XDG_CONFIG_HOME/snakemake/ and win over the bundled ones for `--profile local`: they may name
# another install's Snakefile. Every test (and every child it starts) sees an empty config home.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="pipe_rules_tests_xdg_")
PYTHON = sys.executable


def h2_species(n: int) -> list[dict]:
    """n distinct species (H2 at different bond lengths): distinct fingerprints, no RDKit needed."""
    return [{"label": f"h2_{i}", "xyz": f"H 0 0 0\nH 0 0 {0.70 + 0.001 * i:.3f}"} for i in range(n)]


def write_config(folder: Path, n_tasks: int = 4, family: str = "species_sp", engine: str = "noop",
                 species: list[dict] | None = None, runs: list[dict] | None = None, **defaults) -> Path:
    settings = {"engine": engine, "level": "GFN2-xTB", "shards": 2, "lease_s": 30, "heartbeat_s": 1,
                "clock_skew_s": 0, "linger_s": 5, "max_attempts": 3}
    settings.update(defaults)
    config = {
        "campaign": "test",
        "run_root": str(folder / "runs"),
        "defaults": settings,
        "species": species if species is not None else h2_species(n_tasks),
        "runs": runs or [{"name": "main", "family": family}],
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def staged_run(tmp_path):
    """Factory: write a config, stage its first run, return its RunLayout."""
    def make(n_tasks: int = 4, **kwargs) -> RunLayout:
        config = write_config(tmp_path, n_tasks, **kwargs)
        campaign = load_campaign(config)
        stage_run(campaign, campaign.runs[0].name)
        return RunLayout(campaign.run_dir(campaign.runs[0].name))
    return make


def pipe_rules_cli(*args: str, cwd: Path | None = None, check: bool = False, timeout: float = 600):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([PYTHON, "-m", "pipe_rules", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pipe-rules {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def interruptible() -> None:
    """preexec_fn for a child the test will Ctrl-C: a suite started in the background (`make test &`,
    some CI runners) ignores SIGINT, children inherit that, and Python then never raises
    KeyboardInterrupt, so the SIGINT a test sends would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(predicate, timeout: float = 60.0, what: str = "condition", poll_s: float = 0.005) -> None:
    """Poll `predicate`; the timeout only turns a hang into a failure, it decides nothing else."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"{what} not reached within {timeout} s")


@contextmanager
def mounted_tmpfs(folder: Path, options: str, what: str = "a tmpfs") -> Iterator[Path]:
    """A real tmpfs mounted on `folder` for the test (mounting needs root: the test skips otherwise)."""
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount {what} here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def snakemake(folder: Path, *extra: str):
    """`snakemake --profile profiles/local` on folder/config.yaml, as a user runs it."""
    cmd = [PYTHON, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile"),
           "--configfile", "config.yaml", "--profile", str(REPO / "profiles" / "local"), *extra]
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=600)


def tblite_energy(xyz: dict, method: str = "GFN2-xTB") -> float:
    """The reference: tblite's own interface called directly (Bohr), not through pipe_rules or ASE."""
    import numpy as np
    from ase.data import atomic_numbers
    from ase.units import Bohr
    from tblite.interface import Calculator

    numbers = np.array([atomic_numbers[s] for s in xyz["symbols"]])
    calc = Calculator(method, numbers, np.array(xyz["coords"], dtype=float) / Bohr)
    calc.set("verbosity", 0)
    return float(calc.singlepoint().get("energy"))


WATER = "O 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469"
HCN_GUESS = "C 0 0 0\nN 1.18 0 0\nH 0.59 1.0 0"  # H bridging C and N
FAMILY_SPECIES = [
    {"label": "water", "xyz": WATER},
    {"label": "ethane", "smiles": "CC", "torsions": [[2, 0, 1, 5]]},  # RDKit order: C0 C1, H2-4 on C0, H5-7 on C1
    {"label": "bad_water", "xyz": WATER, "multiplicity": 2},  # 10 electrons cannot be a doublet
    {"label": "hcn_ts", "ts_guesses": [HCN_GUESS]},
]
FAMILY_REACTIONS = [{"label": "h_exchange", "reactant_xyz": "H 0 0 0\nH 0.74 0 0\nH 3.0 0 0",
                     "product_xyz": "H -1.5 0 0\nH 0.74 0 0\nH 1.48 0 0", "multiplicity": 2}]


def family_config(folder, runs, species=FAMILY_SPECIES, reactions=FAMILY_REACTIONS, **defaults):
    """A tblite campaign of every family's inputs (test_families_e2e, test_report), one shard per run."""
    path = write_config(folder, engine="tblite", species=species, runs=runs, shards=1, **defaults)
    data = yaml.safe_load(path.read_text())
    if reactions:
        data["reactions"] = reactions
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def parse_tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return {name: rows[1:] for name, rows in parser.tables.items()}  # without the header row


class _Tables(HTMLParser):
    """Text of every <table id=...> as rows of cells (the header row first)."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = dict(attrs).get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
