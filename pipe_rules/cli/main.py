"""`pipe-rules`: stage, work, status, results, reconcile, cancel, ingest, report, run, init, doctor.

Every PipeRulesError (bad config, spec, state or records) and every OSError (a file named on the
command line that cannot be read or written) becomes one line on stderr naming the file and field,
and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipe_rules.cli import commands
from pipe_rules.contracts.errors import PipeRulesError, os_error_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipe-rules", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stage", help="stage the runs of a campaign config (idempotent)")
    p.add_argument("config", help="campaign config.yaml")
    p.add_argument("--run", action="append", help="stage only this run (repeatable)")
    p.set_defaults(func=commands.cmd_stage)
    p = sub.add_parser("work", help="run one worker on a run folder (what a shard job does)")
    p.add_argument("run_dir")
    p.add_argument("--shard", help="preferred shard, e.g. shard-000")
    p.add_argument("--record", help="write the worker summary (JSON) here")
    p.add_argument("--no-linger", action="store_true", help="exit as soon as the queues are empty")
    p.set_defaults(func=commands.cmd_work)
    for name, func, text in (("status", commands.cmd_status, "run state and task counts per state"),
                             ("results", commands.cmd_results, "the ingested records")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_dir")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table" if name == "status" else
                       "print JSON Lines: the summary, then {\"owner\": ...} per owner, {\"failed\": ...} per failed task")
        if name == "results":
            p.add_argument("--owners", type=int, default=commands.RESULTS_TABLE_OWNERS, metavar="N",
                           help=f"rows of the table and failed tasks listed (default {commands.RESULTS_TABLE_OWNERS}; 0: all)")
        if name == "status":
            p.add_argument("--exact", action="store_true",
                           help="read every task's state file instead of counting queue tokens")
            p.add_argument("--owners", type=int, default=25, metavar="N",
                           help="rows of the per-owner table (default 25; -1: all; 0: no per-owner "
                                "counts or CPU-hours, the fastest)")
            p.add_argument("--watch", type=float, nargs="?", const=2.0, default=None, metavar="SECONDS",
                           help="redraw every SECONDS (default 2) until the run ends or Ctrl-C")
        p.set_defaults(func=func)
    p = sub.add_parser("reconcile", help="re-queue expired leases, repair queue tokens and corrupt states")
    p.add_argument("run_dir")
    p.set_defaults(func=commands.cmd_reconcile)
    p = sub.add_parser("cancel", help="cancel every task that has not finished")
    p.add_argument("run_dir")
    p.set_defaults(func=commands.cmd_cancel)
    p = sub.add_parser("ingest", help="reconcile, write results/ (records.jsonl, summary.json; never runs a task; "
                                      "unfinished work is handed back to the cluster, exit 3)")
    p.add_argument("run_dir")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="how long to wait for tasks held by live workers (default: one lease + clock skew)")
    p.add_argument("--no-finish", action="store_true", help=argparse.SUPPRESS)  # the old default; kept for scripts
    p.add_argument("--table", action="store_true", help="print the results table")
    p.add_argument("--report", action="store_true", help="also write results/report.html")
    p.set_defaults(func=commands.cmd_ingest)
    p = sub.add_parser("report", help="write the HTML report of an ingested run (tables and plots)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="where to write it (default: RUN_DIR/results/report.html)")
    p.set_defaults(func=commands.cmd_report)
    p = sub.add_parser("run", help="run a campaign through snakemake with a profile")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument("--profile", default="local",
                   help="a profile folder, or a name: a profile installed by 'pipe-rules init', else the one "
                        "bundled with the package (default: local)")
    p.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                   help="when stdout is not a terminal: print a progress line every SECONDS (0: none); "
                        "on a terminal, live bars are shown instead")
    p.set_defaults(func=commands.cmd_run, snakemake_args=[])
    p.epilog = "Arguments after '--' go to snakemake unchanged, e.g. pipe-rules run config.yaml -- -n"
    p = sub.add_parser("doctor", help="check profile, scheduler, engines, config and run folder before submitting")
    p.add_argument("profile", help="a profile folder, or the name of an installed or bundled profile")
    p.add_argument("--config", default="config.yaml", help="campaign config (default: config.yaml)")
    p.set_defaults(func=commands.cmd_doctor)
    p = sub.add_parser("init", help="install the profiles for `snakemake --profile NAME` and a starter config.yaml here")
    p.add_argument("--profile", action="append", metavar="NAME",
                   help="install only this bundled profile (repeatable; default: all)")
    p.add_argument("--force", action="store_true",
                   help="also replace edited copies (each is first renamed to NAME.bakN)")
    p.add_argument("--no-config", action="store_true", help="do not write config.yaml here")
    p.set_defaults(func=commands.cmd_init)
    p = sub.add_parser("config-reference", help="print the config reference (markdown) generated from the schema")
    p.add_argument("--update", metavar="README", help="rewrite the block between the config-reference markers here")
    p.set_defaults(func=commands.cmd_config_reference)
    p = sub.add_parser("schemas", help="check the JSON schemas in pipe_rules/contracts/schemas against the models")
    p.add_argument("--update", action="store_true", help="rewrite the schema files from the models")
    p.set_defaults(func=commands.cmd_schemas)
    return parser


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after the first '--' is for snakemake (argparse cannot put it after an option)."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def main(argv: list[str] | None = None) -> int:
    own, passthrough = _split_passthrough(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(own)
    if passthrough:
        if args.command != "run":
            parser.error(f"arguments after '--' ({' '.join(passthrough)}) are only for 'pipe-rules run'")
        args.snakemake_args = passthrough
    # Run folders must not be writable by other users, whatever the login umask (002 is common);
    # a stricter umask (077) is kept.
    os.umask(os.umask(0) | 0o022)
    try:
        return args.func(args)
    except PipeRulesError as exc:
        print(f"pipe-rules: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the user named cannot be read or written: say which and why
        print(f"pipe-rules: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
