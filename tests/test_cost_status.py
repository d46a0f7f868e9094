"""Cost accounting per task attempt, per owner and per run; `status` per owner; `--watch`; the live
progress of `pipe-rules run` on a terminal. Real workers on the no-op engine (fast, and it can be
told to hold memory or sleep)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess

import pytest
from conftest import PYTHON, REPO, h2_species, parse_tables, pipe_rules_cli, write_config

from pipe_rules.execution.worker import run_worker
from pipe_rules.reporting.ingest import ingest
from pipe_rules.reporting.report_html import write_report
from pipe_rules.reporting.status import run_status
from pipe_rules.store.fsio import read_json
from pipe_rules.store.lifecycle import cancel
from pipe_rules.store.manifest import manifest_task_ids
from pipe_rules.store.states import TaskState
from pipe_rules.store.task_files import read_result
from pipe_rules.store.taskstate import read_state
from pipe_rules.store.records_io import load_records

ODD_LABEL = "<b>h2 & co</b>"  # any string is a valid species label: it must reach HTML escaped


def results_of(layout):
    out = {}
    for task_id in manifest_task_ids(layout):
        state = read_state(layout, task_id)
        out[task_id] = read_result(layout.result(task_id, state.attempt_index))
    return out


def test_each_result_records_cpu_hours_and_the_task_peak(staged_run):
    layout = staged_run(3, cores=2, options={"sleep_s": 0.05})
    run_worker(layout.root, install_signals=False, linger=False)
    for result in results_of(layout).values():
        timings, res = result["timings"], result["resources"]
        assert res["cores"] == 2
        assert res["cpu_hours"] == pytest.approx(2 * timings["wall_s"] / 3600, rel=1e-12)
        assert res["cpu_hours_used"] == pytest.approx(timings["cpu_s"] / 3600, rel=1e-12)
        assert timings["wall_s"] >= 0.05 and 0 <= timings["cpu_s"] < timings["wall_s"]  # it slept
        assert res["peak_rss_scope"] == "task" and res["peak_rss_mb"] >= res["rss_end_mb"] > 0


def test_a_big_task_shows_a_bigger_peak_than_a_small_one_run_later_in_the_same_process(tmp_path):
    """The peak is reset per task: without the reset the small task would report the big one's peak."""
    from pipe_rules.inputs.config import load_campaign
    from pipe_rules.inputs.staging import stage_run
    from pipe_rules.store.layout import RunLayout

    runs = [{"name": "big", "family": "species_sp", "options": {"alloc_mb": 400}},
            {"name": "small", "family": "species_sp"}]
    campaign = load_campaign(write_config(tmp_path, 1, runs=runs))
    peaks = {}
    for name in ("big", "small"):  # both in this one process, big first
        stage_run(campaign, name)
        layout = RunLayout(campaign.run_dir(name))
        run_worker(layout.root, install_signals=False, linger=False)
        [result] = results_of(layout).values()
        assert result["resources"]["peak_rss_scope"] == "task"
        peaks[name] = result["resources"]["peak_rss_mb"]
    assert peaks["big"] > peaks["small"] + 300 and peaks["small"] > 0


@pytest.fixture
def mixed_run(tmp_path):
    """6 tasks and one deduplicated owner: 3 done, 1 cancelled, 2 pending."""
    species = h2_species(5) + [{"label": ODD_LABEL, "xyz": "H 0 0 0\nH 0 0 0.9"},
                               {"label": "h2_copy", "xyz": h2_species(1)[0]["xyz"]}]  # same input as h2_0
    write_config(tmp_path, species=species, cores=2, shards=1)
    proc = pipe_rules_cli("stage", str(tmp_path / "config.yaml"), check=True)
    assert "1 duplicate input(s) merged" in proc.stdout
    from pipe_rules.store.layout import RunLayout

    layout = RunLayout(tmp_path / "runs" / "test" / "main")
    ids = manifest_task_ids(layout)
    run_worker(layout.root, install_signals=False, max_tasks=3, linger=False)
    pending = [t for t in ids if read_state(layout, t).status is TaskState.PENDING]
    cancel(layout, pending[0], "flock")
    return layout


def _column_of(state: TaskState) -> str:
    return {TaskState.PENDING: "pending", TaskState.COMPLETED: "done", TaskState.CANCELLED: "cancelled"}[state]


def test_status_counts_and_cpu_hours_per_owner(mixed_run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # room for every column of the table
    layout = mixed_run
    fast, exact = run_status(layout, owners=True), run_status(layout, exact=True, owners=True)
    expected: dict[str, dict] = {}
    cpu_hours: dict[str, float] = {}
    for task_id in manifest_task_ids(layout):
        state = read_state(layout, task_id)
        owner = read_json(layout.spec(task_id), "spec")["owner_key"]
        row = expected.setdefault(owner, dict.fromkeys(("pending", "running", "done", "failed", "cancelled"), 0))
        row[_column_of(state.status)] += 1
        if state.status is TaskState.COMPLETED:
            result = read_result(layout.result(task_id, 0))
            cpu_hours[owner] = result["resources"]["cpu_hours"]
    h2_0 = expected["h2_0"]
    expected["h2_copy"] = dict(h2_0)  # shares h2_0's task and state, not its cost
    assert set(fast.owners) == set(expected) == {f"h2_{i}" for i in range(5)} | {ODD_LABEL, "h2_copy"}
    for owner, row in expected.items():
        for view in (fast, exact):
            got = view.owners[owner]
            assert {k: getattr(got, k) for k in row} == row, owner
            assert got.cost.cpu_hours == pytest.approx(cpu_hours.get(owner, 0.0), rel=1e-3, abs=1e-12), owner
    assert fast.cost.attempts == 3 and fast.cost.cpu_hours == pytest.approx(sum(cpu_hours.values()), rel=1e-3)

    out = json.loads(pipe_rules_cli("status", str(layout.root), "--json", check=True).stdout)
    assert out["tasks"]["COMPLETED"] == 3 and out["tasks"]["CANCELLED"] == 1 and out["tasks"]["PENDING"] == 2
    assert {o: {k: v[k] for k in expected[o]} for o, v in out["owners"].items()} == expected
    assert out["cost"]["attempts"] == 3

    text = pipe_rules_cli("status", str(layout.root), "--owners", "-1", check=True).stdout
    assert "per owner (7)" in text
    rows = {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.count("│") > 5)}
    for owner, row in expected.items():
        assert rows[owner][:5] == [str(row[k]) for k in ("pending", "running", "done", "failed", "cancelled")]
    assert "CPU-hours so far" in text
    short = pipe_rules_cli("status", str(layout.root), "--owners", "2", check=True).stdout
    assert "first 2 of 7 owners" in short
    plain = pipe_rules_cli("status", str(layout.root), "--owners", "0", "--json", check=True).stdout
    assert "owners" not in json.loads(plain)


def test_records_cost_per_owner_and_run_and_the_report_escapes_labels(mixed_run, tmp_path):
    layout = mixed_run
    run_worker(layout.root, install_signals=False, linger=False)  # the 2 pending tasks
    ingest(layout)
    records = load_records(layout)
    results = {t: r for t, r in results_of_existing(layout).items()}
    assert len(results) == 5  # the cancelled task never ran
    run_cost = records["cost"]
    assert run_cost["tasks"] == 6 and run_cost["attempts"] == 5
    assert run_cost["cpu_hours"] == pytest.approx(sum(r["resources"]["cpu_hours"] for r in results.values()))
    assert run_cost["elapsed_s"] >= max(r["timings"]["wall_s"] for r in results.values())
    assert sorted(run_cost["attempt_wall_s_sample"]) == sorted(round(r["timings"]["wall_s"], 6) for r in results.values())
    assert run_cost["attempt_wall_s_count"] == 5  # below the sample size: every attempt is in it
    owners = records["owners"]
    assert sum(o["cost"]["cpu_hours"] for o in owners.values()) == pytest.approx(run_cost["cpu_hours"])
    assert owners["h2_copy"]["cost"] == {"tasks": 1, "attempts": 0, "cpu_hours": 0.0, "cpu_hours_used": 0.0,
                                         "task_wall_s": 0.0, "peak_rss_mb": None}
    assert owners["h2_0"]["cost"]["attempts"] == 1 and owners["h2_0"]["cost"]["peak_rss_mb"] > 0
    status = run_status(layout, owners=True)
    assert status.cost.cpu_hours == pytest.approx(run_cost["cpu_hours"], rel=1e-4)

    out = tmp_path / "elsewhere" / "report.html"
    assert pipe_rules_cli("report", str(layout.root), "--out", str(out), check=True).stdout.strip() == str(out)
    html = out.read_text()
    assert "<b>h2" not in html and "&lt;b&gt;h2 &amp; co&lt;/b&gt;" in html
    tables = parse_tables(html)
    assert ODD_LABEL in {row[0] for row in tables["owners"]}
    assert {row[0]: row[1] for row in tables["summary"]}["tasks CANCELLED"] == "1"
    assert write_report(layout) == layout.results_dir / "report.html"


def results_of_existing(layout):
    out = {}
    for task_id in manifest_task_ids(layout):
        path = layout.result(task_id, read_state(layout, task_id).attempt_index)
        if path.exists():
            out[task_id] = read_result(path)
    return out


def test_watch_redraws_until_the_run_is_terminal(staged_run):
    layout = staged_run(3, options={"sleep_s": 0.2})
    watch = subprocess.Popen([PYTHON, "-m", "pipe_rules", "status", str(layout.root), "--watch", "0.2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert watch.poll() is None  # the run is only staged: nothing to stop for
        run_worker(layout.root, install_signals=False, linger=False)
        out, err = watch.communicate(timeout=120)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    assert "test.main: COMPLETED" in out and "per owner (3)" in out  # off a terminal: the final view only


@pytest.mark.slow
def test_run_on_a_terminal_shows_live_progress_bars(tmp_path):
    write_config(tmp_path, 6, options={"sleep_s": 0.3}, shards=2)
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="160", LINES="50")
    proc = subprocess.Popen([PYTHON, "-m", "pipe_rules", "run", "config.yaml", "--profile", "local"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert "main" in screen and "6/6" in screen and "6 done, 0 failed, 0 running, 0 pending" in screen
    assert "━" in screen  # the bar
    assert "Finished jobid" in screen or "steps (100%) done" in screen  # Snakemake's own lines still shown
    assert (tmp_path / "runs/test/main/results/report.html").is_file()


@pytest.mark.slow
def test_run_elsewhere_prints_plain_progress_lines(tmp_path):
    write_config(tmp_path, 4, options={"sleep_s": 0.2})
    proc = pipe_rules_cli("run", "config.yaml", "--profile", str(REPO / "profiles" / "local"),
                          "--progress-every", "0.5", cwd=tmp_path, check=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("progress main:")]
    assert lines and lines[-1] == "progress main: 4/4 ended (4 done, 0 failed, 0 running, 0 pending)"
    assert "\x1b[" not in proc.stdout  # no terminal codes in a log


def test_owner_table_from_the_ledgers_matches_the_states_with_an_alias(mixed_run, monkeypatch):
    import pipe_rules.reporting.status as status

    monkeypatch.setattr(status, "LIST_PENDING_BELOW", 0)  # counted from the ledgers, tokens of pending unread
    fast, exact = run_status(mixed_run, owners=True), run_status(mixed_run, exact=True, owners=True)
    assert fast.counts == exact.counts and fast.as_json()["owners"] == exact.as_json()["owners"]
    assert fast.as_json()["owners"]["h2_copy"]["tasks"] == 1 and fast.cost.attempts == 3


def test_ledgers_read_in_small_blocks_give_the_same_summary_as_read_at_once(mixed_run, monkeypatch):
    """Ledgers are parsed a block at a time (bounded memory at 1,000,000 lines); a line cut by a
    block boundary, or still being written, is read whole."""
    from pipe_rules.store.ledger import ledger_dir
    from pipe_rules.store.ledger_summary import LedgerSummary
    from pipe_rules.store.owner_index import load_owner_index

    index = load_owner_index(mixed_run)
    whole = LedgerSummary(mixed_run.root, cache=False).refresh(index)
    [ledger] = list(ledger_dir(mixed_run.root).glob("*.tsv"))
    task_id = manifest_task_ids(mixed_run)[-1]
    with open(ledger, "ab") as handle:
        handle.write(f"{task_id}\t0\t1".encode())  # a worker in the middle of its write
    small = LedgerSummary(mixed_run.root, cache=False, block=7).refresh(index)
    assert (small.done == whole.done).all() and int(small.done.sum()) == 3 and small.attempts == whole.attempts == 3
    assert (small.cost == pytest.approx(whole.cost)) and small.totals == pytest.approx(whole.totals)
    with open(ledger, "ab") as handle:
        handle.write(b"\t1.0\t1.0\t30.000\tCOMPLETED\n")
    assert int(small.refresh(index).done.sum()) == 4 and small.attempts == 4
