"""The package a host such as ARC can depend on: the sdist and the wheel carry the workflow, the
profiles and the scripts; a wheel installed into a fresh venv (no checkout on sys.path) runs a
campaign from an empty folder through `pipe-rules run`, through plain `snakemake --profile local`
after `pipe-rules init`, and through PipeAPI; `doctor` passes there.

The fresh venv holds only the wheel. Its dependencies are the test venv's (installed from the same
pyproject.toml), reached through a .pth line, so the test needs no network; the checkout itself is
not on that venv's sys.path (asserted), and the test venv's editable install is not active there
(.pth files of a folder added by a .pth line are not processed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import PYTHON, REPO

pytestmark = pytest.mark.slow

RESOURCES = ("workflow/Snakefile", "workflow/rules/stage.smk", "workflow/rules/shards.smk",
             "workflow/rules/ingest.smk", "workflow/rules/common.smk", "profiles/local/config.v8+.yaml",
             "profiles/slurm/config.v8+.yaml", "profiles/sge/config.v8+.yaml", "profiles/lsf/config.v8+.yaml",
             "scripts/stage_run.py", "scripts/pipe_worker.py", "config.yaml")
EXECUTABLE = ("scripts/stage_run.py", "scripts/pipe_worker.py", "scripts/ingest_run.py")
# the executor plugin of the cluster profiles, found by Snakemake's registry by this module's name
PLUGIN = ("snakemake_executor_plugin_pipe_rules/__init__.py", "pipe_rules/schedulers/executor.py")
CAMPAIGN = {
    "campaign": "pkg",
    "defaults": {"engine": "tblite", "level": "GFN1-xTB", "shards": 1, "lease_s": 30, "heartbeat_s": 1,
                 "linger_s": 1},
    "species": [{"label": "water", "xyz": "O 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469"}],
    "runs": [{"name": "sp", "family": "species_sp"}],
}
WATER_GFN1 = -5.768641  # README tutorial (species_sp, GFN1-xTB)


def _source_copy(target: Path) -> Path:
    """The working tree's files (tracked and new, not ignored), symbolic links kept as links."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not (source.exists() or source.is_symlink()):
            continue  # deleted in the working tree
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), dest)
        else:
            shutil.copy2(source, dest)
    return target


def _build(kind: str, source: Path, out: Path) -> Path:
    """setuptools' PEP 517 hooks, run in the source folder with the test venv's setuptools (offline)."""
    out.mkdir(parents=True, exist_ok=True)
    hook = "build_sdist" if kind == "sdist" else "build_wheel"
    proc = subprocess.run([PYTHON, "-c", f"import sys; from setuptools import build_meta as b; "
                           f"print(b.{hook}(sys.argv[1]))", str(out)], cwd=source, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """An sdist built from the working tree, and a wheel built from that sdist alone."""
    root = tmp_path_factory.mktemp("dists")
    sdist = _build("sdist", _source_copy(root / "src"), root / "dist")
    with tarfile.open(sdist) as tar:
        tar.extractall(root / "unpacked", filter="tar")
    wheel = _build("wheel", next((root / "unpacked").iterdir()), root / "dist")
    return sdist, wheel


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, dists):
    root = tmp_path_factory.mktemp("venv")
    venv = root / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    proc = subprocess.run([PYTHON, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                           "--no-index", str(dists[1])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fresh_site = subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    (Path(fresh_site) / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return dict(env, XDG_CONFIG_HOME=str(tmp / "xdg"), PYTHONUNBUFFERED="1")


def _campaign_folder(tmp: Path) -> Path:
    folder = tmp / "campaign"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(CAMPAIGN, sort_keys=False))
    return folder


def _energy(folder: Path) -> float:
    lines = (folder / "runs" / "pkg" / "sp" / "results" / "records.jsonl").read_text().splitlines()
    owners = {record["owner_key"]: record for record in map(json.loads, lines)}
    return owners["water"]["e_elect_hartree"]


def test_sdist_and_wheel_carry_workflow_profiles_scripts(dists):
    sdist, wheel = dists
    with tarfile.open(sdist) as tar:
        names = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    with zipfile.ZipFile(wheel) as whl:
        infos = {i.filename: i for i in whl.infolist()}
    for name in RESOURCES:
        assert f"pipe_rules/resources/{name}" in names, f"sdist lacks {name}"
        assert f"pipe_rules/resources/{name}" in infos, f"wheel lacks {name}"
    for name in EXECUTABLE:
        assert infos[f"pipe_rules/resources/{name}"].external_attr >> 16 & 0o111, f"{name} lost its exec bit"
    for name in PLUGIN:
        assert name in infos and name in names, f"wheel or sdist lacks {name}"
    assert not [n for n in infos if "__pycache__" in n or n.endswith(".pyc")]
    print(f"wheel {wheel.name}: {wheel.stat().st_size} bytes; sdist {sdist.stat().st_size} bytes")


def test_fresh_venv_has_no_checkout_on_sys_path(fresh_venv, tmp_path):
    proc = subprocess.run([fresh_venv / "bin" / "python", "-c", "import json, sys, pipe_rules; "
                           "from pipe_rules.host.resources import snakefile; "
                           "print(json.dumps([pipe_rules.__file__, str(snakefile()), sys.path]))"],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, check=True)
    module, workflow, path = json.loads(proc.stdout)
    assert module.startswith(str(fresh_venv)) and workflow.startswith(str(fresh_venv)), (module, workflow)
    assert not [p for p in path if p and Path(p).resolve() == REPO], path


def test_fresh_venvs_snakemake_finds_the_pipe_rules_executor(fresh_venv, tmp_path):
    proc = subprocess.run([fresh_venv / "bin" / "python", "-c", "import json; "
                           "from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry as R; "
                           "import snakemake_executor_plugin_pipe_rules as p; "
                           "print(json.dumps(['pipe-rules' in R().get_registered_plugins(), p.__file__]))"],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, check=True)
    found, module = json.loads(proc.stdout)
    assert found and module.startswith(str(fresh_venv)), module


def test_pipe_rules_run_and_doctor_from_an_empty_folder(fresh_venv, tmp_path):
    folder = _campaign_folder(tmp_path)
    env = _env(tmp_path)
    doctor = subprocess.run([fresh_venv / "bin" / "pipe-rules", "doctor", "local"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "FAIL" not in doctor.stdout
    run = subprocess.run([fresh_venv / "bin" / "pipe-rules", "run", "config.yaml"], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{fresh_venv}/lib" in run.stdout  # the Snakefile snakemake ran is the installed one
    assert _energy(folder) == pytest.approx(WATER_GFN1, abs=1e-5)


def test_init_then_plain_snakemake_profile_local(fresh_venv, tmp_path):
    folder = tmp_path / "campaign"
    folder.mkdir()
    env = _env(tmp_path)
    init = subprocess.run([fresh_venv / "bin" / "pipe-rules", "init"], cwd=folder, env=env, capture_output=True,
                          text=True, check=True)
    assert f"{folder / 'config.yaml'}: written" in init.stdout
    installed = tmp_path / "xdg" / "snakemake"
    assert sorted(p.name for p in installed.iterdir()) == ["htcondor", "local", "lsf", "pbs", "sge", "slurm"]
    starter = yaml.safe_load((folder / "config.yaml").read_text())
    assert starter["campaign"] == "demo"  # the repository's config.yaml, shipped as the starter
    (folder / "config.yaml").write_text(yaml.safe_dump(CAMPAIGN, sort_keys=False))  # the user edits it
    again = subprocess.run([fresh_venv / "bin" / "pipe-rules", "init"], cwd=folder, env=env, capture_output=True,
                           text=True, check=True)
    assert f"{folder / 'config.yaml'}: kept" in again.stdout  # never overwritten without --force
    proc = subprocess.run([fresh_venv / "bin" / "python", "-m", "snakemake", "--profile", "local"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _energy(folder) == pytest.approx(WATER_GFN1, abs=1e-5)


def test_pipe_api_from_the_fresh_venv(fresh_venv, tmp_path):
    script = tmp_path / "host.py"
    script.write_text(
        "import json, sys, time\n"
        "from pipe_rules.api import PipeAPI\n"
        "api = PipeAPI(sys.argv[1])\n"
        "api.create_run('sp', family='species_sp', engine='tblite', level='GFN1-xTB', shards=1, linger_s=1,\n"
        "               species=[{'label': 'water', 'xyz': 'O 0 0 0.117\\nH 0 0.757 -0.469\\nH 0 -0.757 -0.469'}])\n"
        "api.launch('sp', profile='local')\n"
        "deadline = time.time() + 600\n"
        "while not api.poll('sp').done and time.time() < deadline:\n"
        "    time.sleep(0.5)\n"
        "results = api.collect('sp')\n"
        "print(json.dumps({'state': results.run_state, 'e': results.owners['water'].energy_hartree,\n"
        "                  'command': api.handle('sp').command}))\n")
    proc = subprocess.run([fresh_venv / "bin" / "python", str(script), str(tmp_path / "project")], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=700)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["state"] == "COMPLETED"
    assert out["e"] == pytest.approx(WATER_GFN1, abs=1e-5)
    assert any(part.startswith(str(fresh_venv)) and part.endswith("Snakefile") for part in out["command"])
