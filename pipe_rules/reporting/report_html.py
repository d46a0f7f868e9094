"""`results/report.html`: one self-contained page per run, for people to look at after a run.

It holds a summary (tasks per state, CPU-hours, wall time, peak memory), one row per owner (its
tasks, the family's numbers, its cost), the failures, and the plots of `report_plots` that the
run has data for, embedded as base64 PNG so the page can be mailed or copied alone. Everything
comes from the ingested results, read as a stream: the summary, the first MAX_OWNER_ROWS owners
(plots draw from the same rows) and the first MAX_FAILURE_ROWS failures, so a run of 1,000,000
tasks renders in bounded memory; every text put into the page is HTML-escaped.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any, Iterable

from pipe_rules.reporting.report_plots import PLOTS, png_bytes
from pipe_rules.reporting.report_table import duration, hours, owner_columns
from pipe_rules.store.fsio import atomic_write_text
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.records_io import load_records

REPORT_NAME = "report.html"
MAX_OWNER_ROWS = 500
MAX_FAILURE_ROWS = 500
MAX_MESSAGE = 300

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
tr.failed td { background: #fdecea; }
figure { display: inline-block; margin: 1em 1em 1em 0; }
figcaption { font-weight: bold; }
.note { color: #666; }
"""


def default_path(layout: RunLayout) -> Path:
    return layout.results_dir / REPORT_NAME


def _table(table_id: str, header: Iterable[str], rows: Iterable[tuple[Iterable[Any], str]]) -> str:
    """rows: (cells, css class); every header and cell is escaped."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for cells, css in rows:
        attr = f' class="{css}"' if css else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


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


def _plots(records: dict[str, Any]) -> list[str]:
    parts = []
    for plot_id, title, draw in PLOTS:
        try:
            fig = draw(records)
            if fig is None:
                continue
            data = base64.b64encode(png_bytes(fig)).decode("ascii")
        except Exception as exc:  # noqa: BLE001 - one bad plot must not cost the run its report
            parts.append(f'<p class="note" id="plot-{plot_id}-error">{escape(title)}: could not be drawn '
                         f'({escape(type(exc).__name__)}: {escape(str(exc))})</p>')
            continue
        parts.append(f'<figure id="plot-{plot_id}"><figcaption>{escape(title)}</figcaption>'
                     f'<img alt="{escape(title, quote=True)}" src="data:image/png;base64,{data}"></figure>')
    return parts


def render_report(records: dict[str, Any]) -> str:
    title = f"pipe_rules report: {records['run_id']}"
    header, rows = owner_rows(records)
    n_owners = records.get("n_owners", len(rows))
    body = [f"<h1>{escape(title)}</h1>", "<h2>Summary</h2>",
            _table("summary", ["", "value"], [([k, v], "") for k, v in summary_rows(records)]),
            f"<h2>Per owner ({n_owners})</h2>",
            _table("owners", header, rows[:MAX_OWNER_ROWS])]
    if n_owners > MAX_OWNER_ROWS:
        body.append(f'<p class="note">first {MAX_OWNER_ROWS} of {n_owners} owners; all are in '
                    'results/records.jsonl</p>')
    failures = records.get("failed", [])
    n_failed = records.get("n_failed", len(failures))
    if failures:
        body += [f"<h2>Tasks that did not complete ({n_failed})</h2>",
                 _table("failures", ["task", "owner", "state", "class", "reason", "engine message"],
                        _failure_rows(records))]
        if n_failed > MAX_FAILURE_ROWS:
            body.append(f'<p class="note">first {MAX_FAILURE_ROWS} of {n_failed}; all are in results/failed.jsonl</p>')
    plots = _plots(records)
    if plots:
        body += ["<h2>Plots</h2>", *plots]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(layout: RunLayout, out: Path | None = None) -> Path:
    """Render the run's ingested results into `out` (default: results/report.html); returns the path."""
    records = load_records(layout, max_owners=MAX_OWNER_ROWS, max_failed=MAX_FAILURE_ROWS)
    path = Path(out) if out is not None else default_path(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_report(records))
    return path
