"""`results/report.html`: one self-contained page per run, for people to look at after a run.

It holds a summary (tasks per state, CPU-hours, wall time, peak memory), one row per owner (its
tasks, the family's numbers, its cost), the failures, and the plots of `report_plots` that the
run has data for, embedded as base64 PNG so the page can be mailed or copied alone. Everything
comes from the ingested results, read as a stream: the summary, the first MAX_OWNER_ROWS owners
(plots draw from the same rows) and the first MAX_FAILURE_ROWS failures, so a run of 1,000,000
tasks renders in bounded memory. The page is a Jinja2 template (templates/report.html.j2) with
autoescape on: every text put into it is HTML-escaped.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template

from pipe_rules.reporting.report_plots import PLOTS, png_bytes
from pipe_rules.reporting.report_table import duration, hours, owner_columns
from pipe_rules.store.fsio import atomic_write_text
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.records_io import load_records

REPORT_NAME = "report.html"
TEMPLATE = "report.html.j2"  # in pipe_rules/reporting/templates/
MAX_OWNER_ROWS = 500
MAX_FAILURE_ROWS = 500
MAX_MESSAGE = 300


def default_path(layout: RunLayout) -> Path:
    return layout.results_dir / REPORT_NAME


def _mb(value: float | None) -> str:
    return "-" if not value else f"{value:.0f} MB"


def summary_rows(records: dict[str, Any]) -> list[tuple[str, str]]:
    cost = records.get("cost") or {}
    counts = records.get("task_counts") or {}
    rows = [("run", records["run_id"]), ("family", records["family"]),
            ("engine / level", f"{records['engine']} / {records['level']}"), ("run state", records["run_state"]),
            ("tasks", str(sum(counts.values())))]
    rows += [(f"tasks {state}", str(n)) for state, n in sorted(counts.items())]
    rows += [("attempts", str(cost.get("attempts", "-"))),
             ("CPU-hours (cores x wall)", hours(cost.get("cpu_hours"))),
             ("CPU-hours used (measured CPU)", hours(cost.get("cpu_hours_used"))),
             ("wall time (first start to last end)", duration(cost.get("elapsed_s"))),
             ("summed task time", duration(cost.get("task_wall_s"))),
             ("peak memory of a task", _mb(cost.get("peak_rss_mb"))),
             ("ingested", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(records["ingested_at"])))]
    return rows


def owner_rows(records: dict[str, Any]) -> tuple[list[str], list[tuple[list[str], str]]]:
    """Header and rows of the per-owner table: tasks, the family's numbers, cost."""
    columns, family_rows = owner_columns(records)
    not_done = Counter(f["owner_key"] for f in records.get("failed", []))
    header = ["owner", "type", "tasks", "done", "not done", *columns, "CPU-hours", "peak memory"]
    rows = []
    for (owner, rec), cells in zip(records["owners"].items(), family_rows):
        cost = rec.get("cost") or {}
        tasks = cost.get("tasks")
        failed = not_done.get(owner, 0)
        done = "-" if tasks is None else str(tasks - failed)
        rows.append(([owner, rec.get("owner_type", ""), "-" if tasks is None else str(tasks), done, str(failed),
                      *cells, hours(cost.get("cpu_hours")), _mb(cost.get("peak_rss_mb"))],
                     "failed" if failed else ""))
    return header, rows


def _failure_rows(records: dict[str, Any]) -> list[tuple[list[str], str]]:
    rows = []
    for f in records.get("failed", [])[:MAX_FAILURE_ROWS]:
        message = (f.get("engine_message") or "")[:MAX_MESSAGE]
        rows.append(([f["task_id"], f["owner_key"], f["status"], f.get("failure_class") or "-",
                      f.get("failure_reason") or "-", message], "failed"))
    return rows


def _plots(records: dict[str, Any]) -> list[dict[str, str]]:
    plots = []
    for plot_id, title, draw in PLOTS:
        try:
            fig = draw(records)
            if fig is None:
                continue
            plots.append({"id": plot_id, "title": title, "png": base64.b64encode(png_bytes(fig)).decode("ascii")})
        except Exception as exc:  # noqa: BLE001 - one bad plot must not cost the run its report
            plots.append({"id": plot_id, "title": title, "error": f"{type(exc).__name__}: {exc}"})
    return plots


@lru_cache(maxsize=1)
def _template() -> Template:
    env = Environment(loader=PackageLoader("pipe_rules.reporting", "templates"), autoescape=True,
                      undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template(TEMPLATE)


def render_report(records: dict[str, Any]) -> str:
    header, rows = owner_rows(records)
    failures = records.get("failed", [])
    return _template().render(
        title=f"pipe_rules report: {records['run_id']}",
        summary=[([k, v], "") for k, v in summary_rows(records)],
        owner_header=header, owner_rows=rows[:MAX_OWNER_ROWS], n_owners=records.get("n_owners", len(rows)),
        failure_rows=_failure_rows(records), n_failures=records.get("n_failed", len(failures)),
        plots=_plots(records))


def write_report(layout: RunLayout, out: Path | None = None, summary: dict | None = None) -> Path:
    """Render the run's ingested results into `out` (default: results/report.html); returns the path.
    `summary`: the one ingestion just returned (see records_io.load_records)."""
    records = load_records(layout, max_owners=MAX_OWNER_ROWS, max_failed=MAX_FAILURE_ROWS, summary=summary)
    path = Path(out) if out is not None else default_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_report(records))
    return path
