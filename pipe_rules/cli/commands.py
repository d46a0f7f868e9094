"""The bodies of the `pipe-rules` subcommands: each takes the parsed arguments and returns the exit
code. Imports are inside each command so `pipe-rules status` does not load the engines, rich, etc.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.store.layout import RunLayout

EXIT_HANDED_BACK = 3  # ingestion found unfinished tasks and handed them back to the cluster
RESULTS_TABLE_OWNERS = 1000  # rows `results` prints by default: a run can have 1,000,000 owners


def cmd_stage(args) -> int:
    from pipe_rules.inputs.config import load_campaign
    from pipe_rules.inputs.campaign_checks import check_campaign
    from pipe_rules.inputs.staging import stage_run

    campaign = load_campaign(args.config)
    check_campaign(campaign)  # nothing is staged unless every run and species can be
    names = args.run or [r.name for r in campaign.runs if not r.from_run]
    for name in names:
        print(stage_run(campaign, name).line())
    return 0


def cmd_work(args) -> int:
    from pipe_rules.execution.worker import EXIT_IO_ERROR, EXIT_TERMINATED, run_worker
    from pipe_rules.store.fsio import atomic_write_json

    if args.record:  # checked first: a summary that cannot be written would fail the shard after its work
        _check_writable_folder(Path(args.record), "--record")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = run_worker(Path(args.run_dir), shard=args.shard, linger=not args.no_linger)
    if args.record:
        atomic_write_json(Path(args.record), summary.as_dict(), pretty=True)
    print(f"worker {summary.worker_id}: {summary.completed} completed, {summary.failed} failed, "
          f"{summary.released} released, {summary.lost} lost ownership ({summary.exit_reason})")
    for line in summary.errors:
        print(f"pipe-rules: error: {line}", file=sys.stderr)
    return {"terminated": EXIT_TERMINATED, "io_error": EXIT_IO_ERROR}.get(summary.exit_reason, 0)


def _check_writable_folder(path: Path, option: str) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"folder {str(folder)!r} does not exist; create it or give another path", path=path,
                          field=option)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"folder {str(folder)!r} is not writable", path=path, field=option)


def _status_views(status, limit: int) -> list:
    from rich.text import Text

    from pipe_rules.reporting.report_table import cost_line, owner_table, status_table

    views = [status_table(status.run_id, status.run_state, status.counts)]
    if status.cost is not None:
        views.append(Text(cost_line(status.cost)))
    if status.owners is not None:
        views.append(owner_table(status.owners, None if limit < 0 else limit))
    return views


def cmd_status(args) -> int:
    from pipe_rules.reporting.status import run_status  # rich only for tables: --json stays lighter

    layout = RunLayout(Path(args.run_dir))
    owners = args.owners != 0
    if args.watch is not None:
        from pipe_rules.reporting.progress import watch_status

        if args.json:
            raise ConfigError("--watch redraws tables; for JSON, call status --json repeatedly", field="--watch")

        return watch_status(layout, args.watch, lambda status: _status_views(status, args.owners),
                            exact=args.exact, owners=owners)
    status = run_status(layout, exact=args.exact, owners=owners)
    if args.json:
        import orjson  # 20,000 owners in ~10 ms; the json module took ~0.15 s

        sys.stdout.flush()
        sys.stdout.buffer.write(orjson.dumps(status.as_json(), option=orjson.OPT_APPEND_NEWLINE))
        sys.stdout.buffer.flush()
    else:
        from pipe_rules.reporting.report_table import print_table

        for view in _status_views(status, args.owners):
            print_table(view)
        for line in status.unreadable:
            print(f"unreadable: {line}", file=sys.stderr)
    return 0


def cmd_results(args) -> int:
    from pipe_rules.reporting.report_table import print_table, results_table
    from pipe_rules.store.records_io import iter_failed, iter_owner_records, load_records, read_summary

    layout = RunLayout(Path(args.run_dir))
    if args.json:  # JSON Lines: the summary, then one line per owner, then one per failed task
        print(json.dumps(read_summary(layout)))
        for record in iter_owner_records(layout):
            print(json.dumps({"owner": record}))
        for fail in iter_failed(layout):
            print(json.dumps({"failed": fail}))
        return 0
    limit = args.owners or None
    records = load_records(layout, max_owners=limit, max_failed=limit)
    print_table(results_table(records))
    for fail in records["failed"]:
        print(f"{fail['status']}: {fail['task_id']} ({fail['failure_class']}: {fail['failure_reason']})")
    if limit and (records["n_owners"] > limit or records["n_failed"] > limit):
        print(f"first {limit} of {records['n_owners']} owners and {records['n_failed']} failed tasks "
              f"(--owners 0 for all; every record is in {layout.records})")
    return 0


def cmd_reconcile(args) -> int:
    from pipe_rules.store.reconcile import reconcile

    report = reconcile(RunLayout(Path(args.run_dir)), sweep_temps=True)
    counts = ", ".join(f"{k}={v}" for k, v in report.counts.items() if v)
    print(f"run {report.run_state.value}: {counts}; orphaned {len(report.orphaned)}, salvaged "
          f"{len(report.salvaged)}, repaired {len(report.repaired)}, removed {len(report.removed_temps)} "
          "stale temp file(s)")
    for line in report.unrepairable:
        print(f"cannot repair: {line}", file=sys.stderr)
    return 1 if report.unrepairable else 0


def cmd_cancel(args) -> int:
    from pipe_rules.store.cancel import cancel_run, ended_before_cancel

    layout = RunLayout(Path(args.run_dir))
    cancelled = cancel_run(layout)
    ended = ended_before_cancel(layout)
    if ended is not None:
        print(f"run already {ended.value}: " + (f"cancelled {cancelled} task(s) still pending or running"
                                               if cancelled else "nothing to cancel"))
        return 0
    print(f"cancelled {cancelled} task(s); running workers stop at their next ownership check")
    return 0


def cmd_ingest(args) -> int:
    """Never runs a task: this is the submit host (a login node). Unfinished work is waited for
    (live leases) or handed back to the cluster (see store/handback.py), exit code 3."""
    from pipe_rules.reporting.ingest import ingest
    from pipe_rules.reporting.report_table import print_table, results_table
    from pipe_rules.store.final_versions import FinalVersions
    from pipe_rules.store.handback import settle

    layout = RunLayout(Path(args.run_dir))
    final = FinalVersions(layout)  # ended tasks' state versions, so ingestion opens them by name
    settled = settle(layout, wait_s=args.wait, final=final)
    if settled.unfinished:
        print(f"pipe-rules: error: {settled.line(layout)}", file=sys.stderr)
        return EXIT_HANDED_BACK
    summary = ingest(layout, reconciled=True, final=final)
    if args.table:
        from pipe_rules.store.records_io import load_records

        print_table(results_table(load_records(layout, max_owners=RESULTS_TABLE_OWNERS, summary=summary)))
    if args.report:
        from pipe_rules.reporting.report_html import write_report

        print(f"report: {write_report(layout, summary=summary)}")
    return 0


def cmd_report(args) -> int:
    from pipe_rules.reporting.report_html import write_report

    print(write_report(RunLayout(Path(args.run_dir)), Path(args.out) if args.out else None))
    return 0


def cmd_run(args) -> int:
    from pipe_rules.host.launch import run_campaign

    return run_campaign(Path(args.config), profile=args.profile, extra=args.snakemake_args,
                        progress_every=args.progress_every)


def cmd_doctor(args) -> int:
    from pipe_rules.cli.doctor_scheduler import FAIL
    from pipe_rules.cli.doctor import print_report, run_doctor

    checks = run_doctor(args.profile, args.config)
    print_report(checks)
    return 1 if any(check.status == FAIL for check in checks) else 0


def cmd_init(args) -> int:
    from pipe_rules.host.profiles import init

    for done in init(Path.cwd(), args.profile or None, force=args.force, config=not args.no_config):
        print(done.line())
    return 0


def cmd_config_reference(args) -> int:
    from pipe_rules.cli.config_reference import render_reference, update_file

    if args.update:
        changed = update_file(Path(args.update))
        print(f"{args.update}: config reference {'rewritten' if changed else 'already up to date'}")
    else:
        print(render_reference(), end="")
    return 0


def cmd_schemas(args) -> int:
    from pipe_rules.cli.schema_files import SCHEMAS, folder, stale, update

    changed = update() if args.update else stale()
    for name in SCHEMAS:
        path = folder() / f"{name}.schema.json"
        state = ("rewritten" if args.update else "out of date with its model") if path in changed else "up to date"
        print(f"{path}: {state}")
    return 1 if changed and not args.update else 0
