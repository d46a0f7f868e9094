"""The end-of-run HTML report of a real campaign (tblite conformers with one engine failure, a rotor
scan, a TS and its IRC) run by `pipe-rules run` through Snakemake: tables hold the right owners and
numbers (checked against the result.json files), every plot is a valid PNG, and plots appear
exactly for the data each run has. Also the plain progress lines `pipe-rules run` prints in a log."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from html.parser import HTMLParser

import pytest
from conftest import FAMILY_SPECIES, REPO, family_config, parse_tables, pipe_rules_cli
from matplotlib.image import imread

from pipe_rules.reporting.report_table import hours
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state
from pipe_rules.store.records_io import load_records

pytestmark = pytest.mark.slow  # a whole Snakemake campaign (or the benchmark): `make check` skips it

BUTANE = {"label": "butane", "smiles": "CCCC"}  # anti and gauche: a real conformer spread
RUNS = [
    {"name": "conformers", "family": "conf_opt", "n_conformers": 4,
     "species": ["water", "ethane", "bad_water", "butane"]},
    {"name": "scan", "family": "rotor_scan_1d", "from_run": "conformers", "scan_resolution_deg": 30},
    {"name": "ts", "family": "ts_opt", "species": ["hcn_ts"]},
    {"name": "irc", "family": "irc", "from_run": "ts"},
]
PLOTS = {  # what each run has data for
    "conformers": {"conformer-spread", "task-durations", "failures"},  # butane's conformers; bad_water fails
    "scan": {"rotor-scans", "task-durations"},
    "ts": {"task-durations"},
    "irc": {"irc-profiles", "task-durations"},
}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    family_config(folder, species=[*FAMILY_SPECIES, BUTANE], runs=RUNS, reactions=None, lease_s=60, heartbeat_s=5, linger_s=1)
    proc = pipe_rules_cli("run", "config.yaml", "--profile", str(REPO / "profiles" / "local"),
                          "--progress-every", "1", cwd=folder)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return folder, proc.stdout


def layout_of(folder, run) -> RunLayout:
    return RunLayout(folder / "runs" / "test" / run)


def all_results(layout: RunLayout) -> dict[str, list[dict]]:
    """owner -> every attempt's result.json of its tasks."""
    out = defaultdict(list)
    for task_id in manifest_task_ids(layout):
        for attempt in range(read_state(layout, task_id).attempt_index + 1):
            path = layout.result(task_id, attempt)
            if path.exists():
                result = read_result(path)
                out[result["owner_key"]].append(result)
    return out


class _Figures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.figures: dict[str, list[str]] = {}
        self._figure: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self._figure = attrs["id"].removeprefix("plot-")
            self.figures[self._figure] = []
        elif tag == "img" and self._figure:
            self.figures[self._figure].append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None


def report(folder, run) -> str:
    path = layout_of(folder, run).results_dir / "report.html"
    assert path.is_file(), f"the workflow wrote no report for run {run}"
    return path.read_text()


@pytest.mark.parametrize("run", list(PLOTS))
def test_plots_appear_exactly_for_the_data_present_and_are_valid_pngs(campaign, run):
    parser = _Figures()
    parser.feed(report(campaign[0], run))
    assert set(parser.figures) == PLOTS[run]
    for plot_id, sources in parser.figures.items():
        [src] = sources
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), plot_id
        image = imread(io.BytesIO(base64.b64decode(src[len(prefix):])), format="png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, plot_id
        assert image.std() > 0, f"{plot_id} is blank"


@pytest.mark.parametrize("run", list(PLOTS))
def test_summary_and_owner_tables_hold_the_results_numbers(campaign, run):
    folder = campaign[0]
    layout = layout_of(folder, run)
    records = load_records(layout)
    results = all_results(layout)
    tables = parse_tables(report(folder, run))
    summary = dict(tables["summary"])
    every = [r for owner in results.values() for r in owner]
    assert summary["run"] == records["run_id"] and summary["run state"] == records["run_state"]
    assert summary["tasks"] == str(len(manifest_task_ids(layout)))
    for state, n in records["task_counts"].items():
        assert summary[f"tasks {state}"] == str(n)
    cores_x_wall = sum(r["resources"]["cores"] * r["timings"]["wall_s"] / 3600 for r in every)
    assert summary["CPU-hours (cores x wall)"] == hours(cores_x_wall)
    assert summary["CPU-hours used (measured CPU)"] == hours(sum(r["timings"]["cpu_s"] / 3600 for r in every))
    assert summary["peak memory of a task"] == f"{max(r['resources']['peak_rss_mb'] for r in every):.0f} MB"
    owners = {row[0]: row for row in tables["owners"]}
    assert set(owners) == set(records["owners"])
    failed = defaultdict(int)
    for f in records["failed"]:
        failed[f["owner_key"]] += 1
    for owner, row in owners.items():
        mine = results.get(owner, [])
        assert row[4] == str(failed[owner])  # "not done"
        assert row[-2] == hours(sum(r["resources"]["cpu_hours"] for r in mine))
    if run == "conformers":  # the family columns: lowest energy per species, from the results themselves
        assert len(results["butane"]) >= 2
        for owner in ("water", "ethane", "butane"):
            lowest = min(r["energy_hartree"] for r in results[owner])
            assert f"{lowest:.6f}" in owners[owner]
        assert owners["bad_water"][4] == "1" and "multiplicity_inconsistent" in str(tables["failures"])


def test_cpu_hours_are_cores_times_wall_time(campaign):
    for run in PLOTS:
        for owner_results in all_results(layout_of(campaign[0], run)).values():
            for r in owner_results:
                assert r["resources"]["cpu_hours"] == pytest.approx(r["resources"]["cores"] * r["timings"]["wall_s"]
                                                                    / 3600, rel=1e-12)
                assert r["resources"]["peak_rss_scope"] == "task" and r["resources"]["peak_rss_mb"] > 0


def test_run_prints_plain_progress_lines_when_not_on_a_terminal(campaign):
    folder, stdout = campaign
    for run in PLOTS:
        counts = load_records(layout_of(folder, run))["task_counts"]
        total, done = sum(counts.values()), counts.get("COMPLETED", 0)
        line = f"progress {run}: {total}/{total} ended ({done} done, {total - done} failed, 0 running, 0 pending)"
        assert line in stdout.splitlines()
    assert stdout.count("report: ") == len(PLOTS)
