#!/usr/bin/env python3
"""pipe_rules throughput benchmark: measured times, memory, syscalls and ratios against baselines
measured in the same run, and every target of issue 13 as MET or MISS.

    python benchmarks/bench.py                        # CI smoke size: 1,000 no-op tasks
    python benchmarks/bench.py --sizes 1000 10000 100000 1000000 --strace --scan-sizes 1000 \\
        --snakemake-sizes 1000 --xtb 500 --baselines-from benchmarks/results/scan-10000.json --json bench.json

For each size N it writes a JSON Lines tasks file (owners of 50 conformers each), stages it,
drains it with W `pipe-rules work` processes, ingests it and renders the report (each step its own
process, timed, its peak RSS taken), times `pipe-rules status` with every task pending and again
at the end, checks that every task is COMPLETED and finds the largest folder. The floor, an atomic
write + rename of a 300-byte file on the run's own filesystem, is measured before and after each
drain; the drain's cost per task per worker is printed as a ratio to it. With --strace a second,
untimed pass counts file-system metadata calls per task (the drain net of the workers' start-up).
Baselines: see bench_baselines.py. --baselines-from merges baseline times measured by an earlier
run (the scan at 10,000 takes 8-16 minutes) into the tables. --check exits 1 when a target MISSes.
Timings are wall-clock on a shared machine: read the ratios, not the third digit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_baselines import bench_scan, bench_snakemake, bench_xtb  # noqa: E402
from bench_measure import vm_rss_mb  # noqa: E402
from bench_pipe import bench_partial, bench_pipe_rules, bench_syscalls, wait_for_removals  # noqa: E402

TARGET_FLOOR_RATIO = 5.0  # drain cost per task per worker / the floor
TARGET_META_CALLS = 12.0  # fs metadata calls per task on the drain path
TARGET_RSS_MB = 300.0  # every process
TARGET_PER_TASK_RATIO = 1.5  # per-task cost, largest vs smallest size
TARGET_STATUS_S = 1.0
TARGET_FOLDER = 5000  # "a few thousand" entries
TARGET_SCAN_RATIO = 50.0  # scan baseline / pipe_rules drain at 10,000
TARGET_EFFICIENCY = 0.95  # real xTB work on W workers


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "load_avg_at_start": list(os.getloadavg()), "host_kind": "shared VM"}


def _table(rows: list[tuple[str, list[str]]], header: list[str]) -> None:
    widths = [max(len(r[0]) for r in rows + [(header[0], [])])] + [
        max(len(header[i + 1]), *(len(r[1][i]) for r in rows)) for i in range(len(header) - 1)]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for name, cells in rows:
        print("  ".join([name.ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells, widths[1:])]))


def print_pipe_rules(results: list[dict], syscalls: dict) -> None:
    sizes = [r["n"] for r in results]
    small, large = results[0], results[-1]
    ratio = len(results) > 1

    def row(name: str, values: list, fmt: str, ratio_of: bool = False) -> tuple[str, list[str]]:
        cells = ["-" if v is None else fmt.format(v) for v in values]
        if ratio:
            cells.append(f"{values[-1] / values[0]:.2f}x" if ratio_of and values[0] and values[-1] is not None else "")
        return name, cells

    def rss(step: str) -> tuple[str, list[str]]:
        return row(f"peak RSS {step} (MB)", [r["peak_rss_mb"].get(step) for r in results], "{:.0f}")

    def status(key: str) -> list:
        return [r["status_s"].get(key) for r in results]

    rows = [
        row("stage (s)", [r["stage_s"] for r in results], "{:.2f}"),
        row("drain (s)", [r["drain_s"] for r in results], "{:.2f}"),
        row("ingest (s)", [r["ingest_s"] for r in results], "{:.2f}"),
        row("report (s)", [r["report_s"] for r in results], "{:.2f}"),
        row("stage+drain+ingest (s)", [r["total_s"] for r in results], "{:.2f}"),
        row("stage+drain+ingest per task (ms)", [r["total_ms_per_task"] for r in results], "{:.3f}", True),
        row("drain per task (ms)", [r["drain_ms_per_task"] for r in results], "{:.3f}", True),
        row("drain CPU per task, all workers, net of start-up (ms)",
            [r.get("drain_cpu_ms_per_task") for r in results], "{:.3f}", True),
        row("workers' start-up and exit, no task (s)", [r["worker_startup_s"] for r in results], "{:.2f}"),
        row("floor: write + rename of 300 B (ms)", [r["floor_ms"] for r in results], "{:.3f}"),
        row("drain per task per worker (ms)", [r["drain_ms_per_task_per_worker"] for r in results], "{:.3f}", True),
        row("  as a ratio to the floor", [r["floor_ratio"] for r in results], "{:.1f}x"),
        row("  net of start-up, ratio to the floor", [r["floor_ratio_net"] for r in results], "{:.1f}x"),
        row("status, every task pending (s)", status("pending"), "{:.2f}"),
        row("status mid-drain (s)", status("mid_drain"), "{:.2f}"),
        row("status at the end, first call (s)", status("first"), "{:.2f}"),
        row("status at the end, again (s)", status("again"), "{:.2f}"),
        row("status --owners 0 (s)", status("owners0"), "{:.2f}"),
        row("  its start-up: interpreter + imports (s)", [r["status_startup_s"] for r in results], "{:.2f}"),
        rss("stage"), rss("worker"), rss("ingest"), rss("report"), rss("status"),
        row("results files (MB)", [r.get("results_mb") for r in results], "{:.1f}"),
        row("files + folders per task", [r["inodes_per_task"] for r in results], "{:.2f}"),
        row("largest folder (entries)", [r["largest_folder"]["entries"] for r in results], "{:d}"),
    ]
    for step in ("stage", "drain", "ingest"):
        if all(n in syscalls for n in sizes):
            rows.append(row(f"fs metadata calls/task, {step}", [syscalls[n]["total"][step] for n in sizes],
                            "{:.1f}", True))
    header = [f"pipe_rules, no-op tasks, {small['workers']} workers"] + [f"{n:,}" for n in sizes]
    _table(rows, header + ([f"{large['n']:,} vs {small['n']:,}"] if ratio else []))
    for r in results:
        c = r["completed"]
        if r.get("partial"):
            print(f"check {r['n']:>7,}: drained for a window only ({r['tasks_in_window']:,} tasks timed in "
                  f"{r['drain_window_s']:.0f} s, {c['ledgers']:,} done in all; not ingested); drain per task is "
                  f"the window's rate, net of start-up by construction")
            continue
        print(f"check {r['n']:>7,}: {c['records']} of {r['n']} tasks COMPLETED in the records, {c['status']} in "
              f"status; largest folder {r['largest_folder']['entries']} entries ({r['largest_folder']['path']})")
    for n in sizes:
        if n in syscalls:
            detail = ", ".join(f"{k} {v}" for k, v in syscalls[n]["drain"].items())
            print(f"metadata calls per task in the drain at {n:,}: {detail}")


def print_baselines(report: dict, drains: dict[int, float], sizes: list[int], sources: dict) -> None:
    print("\nbaselines (same N, 2 workers / 2 cores) vs pipe_rules drain:")
    for name, label in (("scan", "scan-claim (ARC's loop)"), ("snakemake", "Snakemake, one job per task")):
        measured = {int(n): s for n, s in report[name].items()}
        for n in sorted(measured):
            ratio = f"{measured[n] / drains[n]:8.1f}x slower than pipe_rules" if n in drains else \
                "(pipe_rules not run at this size)"
            origin = f"  [from {sources[name][n]}]" if n in sources.get(name, {}) else ""
            print(f"  {label:<28} {n:>9,} tasks: {measured[n]:9.2f} s  {ratio}{origin}")
        for n in sizes:
            if n not in measured and measured:
                top = max(measured)
                grow = (n / top) ** 2 if name == "scan" else n / top
                print(f"  {label:<28} {n:>9,} tasks: not run (extrapolated ~{measured[top] * grow:,.0f} s from "
                      f"{top:,}: {'quadratic' if name == 'scan' else 'linear, plus a DAG of N jobs'})")


def print_xtb(x: dict) -> None:
    def arm(label: str, seconds: float | None, eff: float | None) -> None:
        if seconds is None and eff is None:
            return
        print(f"  {label:<36} {'-' if seconds is None else f'{seconds:8.1f} s'}  "
              f"{'-' if eff is None else f'{100 * eff:.1f}%'}")

    print(f"\nreal work: {x['tasks']} GFN2-xTB conformer optimisations, {x['workers']} cores; "
          "efficiency = summed engine time / (wall x cores)")
    arm(f"pipe_rules, {x['workers']} workers", x.get("pipe_rules_s"), x.get("pipe_rules_efficiency"))
    arm("HyperQueue, one process per task", x.get("hyperqueue_s"), x.get("hyperqueue_efficiency"))
    arm(f"one process per task, {x['workers']} at a time", x.get("one_process_per_task_s"),
        x.get("one_process_efficiency"))


def check_targets(report: dict) -> list[str]:
    results = report["pipe_rules"]
    lines = []

    def target(ok: bool, text: str) -> None:
        lines.append(f"{'MET ' if ok else 'MISS'} {text}")

    by_n = {r["n"]: r for r in results}
    for r in results:
        n = f"{r['n']:,}"
        if r.get("partial"):
            lines.append(f"n/a  every task COMPLETED at {n}: drained for {r['drain_window_s']:.0f} s only "
                         f"({r['completed']['ledgers']:,} done), not ingested")
        else:
            target(r["all_completed"], f"every task COMPLETED at {n}: {r['completed']}")
        target(r["floor_ratio_net"] <= TARGET_FLOOR_RATIO,
               f"drain per task per worker <= {TARGET_FLOOR_RATIO:.0f}x the floor at {n}: {r['floor_ratio_net']:.1f}x "
               f"net of start-up ({r['floor_ratio']:.1f}x gross; {r['drain_net_ms_per_task_per_worker']:.3f} ms vs "
               f"{r['floor_ms']:.3f} ms)")
        calls = report["syscalls_per_task"].get(r["n"])
        if calls:
            target(calls["total"]["drain"] <= TARGET_META_CALLS,
                   f"fs metadata calls per task in the drain <= {TARGET_META_CALLS:.0f} at {n}: {calls['total']['drain']}")
        worst = max(r["peak_rss_mb"].items(), key=lambda kv: kv[1])
        target(worst[1] <= TARGET_RSS_MB, f"every process <= {TARGET_RSS_MB:.0f} MB at {n}: largest {worst[0]} "
                                          f"{worst[1]:.0f} MB")
        # the first call after ingestion refreshes caches once: printed, not judged
        slowest = max(((k, v) for k, v in r["status_s"].items() if k != "first"), key=lambda kv: kv[1])
        net = slowest[1] - r["status_startup_s"]  # the interpreter and imports: the same at any size
        target(net <= TARGET_STATUS_S, f"status <= {TARGET_STATUS_S:.0f} s at {n}: slowest {slowest[0]} {net:.2f} s "
                                       f"net of its start-up ({slowest[1]:.2f} s gross, start-up "
                                       f"{r['status_startup_s']:.2f} s)")
        target(r["largest_folder"]["entries"] <= TARGET_FOLDER,
               f"no folder over {TARGET_FOLDER:,} entries at {n}: {r['largest_folder']['entries']} "
               f"({r['largest_folder']['path']})")
    if len(results) > 1:
        small, large = results[0], results[-1]
        full = [r for r in results if not r.get("partial")]
        if len(full) > 1:
            ratio = full[-1]["total_ms_per_task"] / full[0]["total_ms_per_task"]
            target(ratio <= TARGET_PER_TASK_RATIO, f"total_ms_per_task {full[-1]['n']:,} vs {full[0]['n']:,} within "
                                                   f"{TARGET_PER_TASK_RATIO}x: {ratio:.2f}x")
        if large.get("partial"):  # a window's rate has no start-up in it: against the smallest size's net rate
            ratio = large["drain_ms_per_task"] / small["drain_net_ms_per_task"]
            target(ratio <= TARGET_PER_TASK_RATIO,
                   f"drain per task {large['n']:,} (a {large['drain_window_s']:.0f} s window) vs {small['n']:,} (net of "
                   f"start-up) within {TARGET_PER_TASK_RATIO}x: {ratio:.2f}x ({large['drain_ms_per_task']:.3f} vs "
                   f"{small['drain_net_ms_per_task']:.3f} ms; gross at {small['n']:,}: "
                   f"{large['drain_ms_per_task'] / small['drain_ms_per_task']:.2f}x)")
        else:
            ratio = large["drain_ms_per_task"] / small["drain_ms_per_task"]
            target(ratio <= TARGET_PER_TASK_RATIO,
                   f"drain_ms_per_task {large['n']:,} vs {small['n']:,} within {TARGET_PER_TASK_RATIO}x: {ratio:.2f}x")
    scan = {int(n): s for n, s in report["scan"].items()}
    if 10000 in scan and 10000 in by_n:
        ratio = scan[10000] / by_n[10000]["drain_s"]
        target(ratio >= TARGET_SCAN_RATIO, f">= {TARGET_SCAN_RATIO:.0f}x faster than the scan baseline at 10,000: "
                                           f"{ratio:.0f}x")
    if report.get("xtb", {}).get("pipe_rules_efficiency") is not None:
        eff = report["xtb"]["pipe_rules_efficiency"]
        target(eff >= TARGET_EFFICIENCY, f"parallel efficiency on real xTB work >= {100 * TARGET_EFFICIENCY:.0f}%: "
                                         f"{100 * eff:.1f}%")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scan-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--snakemake-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--xtb", type=int, default=0, help="also run N real xTB conf_opt tasks (and HyperQueue)")
    parser.add_argument("--xtb-arms", nargs="*", default=["pipe_rules", "hyperqueue", "one_process"],
                        help="which xTB arms to run (default all three)")
    parser.add_argument("--strace", action="store_true", help="count file-system metadata calls per task (extra pass)")
    parser.add_argument("--strace-sizes", type=int, nargs="*",
                        help="with --strace: only these sizes (default: every size of --sizes)")
    parser.add_argument("--partial-sizes", type=int, nargs="*", default=[],
                        help="sizes staged but drained only for --partial-drain seconds (no ingestion): 1,000,000 "
                             "would take hours here")
    parser.add_argument("--partial-drain", type=float, default=150.0, help="seconds of drain at --partial-sizes")
    parser.add_argument("--where", type=Path, help="folder for the benchmark's run folders (default: the temp folder)")
    parser.add_argument("--keep-folders", action="store_true",
                        help="leave the full runs' folders in --where (removing millions of files takes hours; "
                             "on a scratch filesystem made for the benchmark, discard the filesystem instead)")
    parser.add_argument("--baselines-from", type=Path, action="append", default=[],
                        help="a --json file of an earlier run whose scan/snakemake times are shown too")
    parser.add_argument("--json", type=Path, help="also write all numbers here")
    parser.add_argument("--check", action="store_true", help="exit 1 if any target is MISSed")
    args = parser.parse_args()
    if args.strace and not shutil.which("strace"):
        raise SystemExit("--strace needs strace (apt-get install strace)")

    sizes = sorted(set(args.sizes) | set(args.partial_sizes))
    report: dict = {"command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": machine(),
                    "pipe_rules": [], "syscalls_per_task": {}, "scan": {}, "snakemake": {}, "baseline_sources": {}}
    for n in sizes:
        if n in args.partial_sizes:
            report["pipe_rules"].append(bench_partial(n, args.workers, args.where, args.partial_drain))
            continue
        r = bench_pipe_rules(n, args.workers, args.where, keep=args.keep_folders)
        report["pipe_rules"].append(r)
        print(f"pipe_rules {n:>9,} tasks: stage {r['stage_s']:.2f} s, drain {r['drain_s']:.2f} s "
              f"({r['drain_ms_per_task']:.3f} ms/task, {r['floor_ratio_net']:.1f}x the floor net), ingest "
              f"{r['ingest_s']:.2f} s, status {r['status_s']['again']:.2f} s; load {os.getloadavg()[0]:.2f}", flush=True)
    if args.strace:
        for n in sorted(args.strace_sizes) if args.strace_sizes is not None else sizes:
            report["syscalls_per_task"][n] = bench_syscalls(n, args.workers, args.where)
            print(f"metadata calls per task at {n:,}: {report['syscalls_per_task'][n]['total']}", flush=True)
    for n in args.scan_sizes:
        report["scan"][n] = bench_scan(n, args.workers, args.where)
        print(f"scan baseline {n:>9,} tasks: {report['scan'][n]:.2f} s", flush=True)
    for n in args.snakemake_sizes:
        report["snakemake"][n] = bench_snakemake(n, args.workers, args.where)
        print(f"snakemake one job per task {n:>9,} tasks: {report['snakemake'][n]:.2f} s", flush=True)
    for path in args.baselines_from:
        earlier = json.loads(path.read_text())
        for name in ("scan", "snakemake"):
            for n, seconds in earlier.get(name, {}).items():
                if int(n) not in report[name]:
                    report[name][int(n)] = seconds
                    report["baseline_sources"].setdefault(name, {})[int(n)] = str(path)
    if args.xtb:
        report["xtb"] = bench_xtb(args.xtb, args.workers, args.where, tuple(args.xtb_arms))
    report["machine"]["load_avg_at_end"] = list(os.getloadavg())
    report["machine"]["this_script_rss_mb"] = vm_rss_mb(os.getpid())

    print()
    if report["pipe_rules"]:
        print_pipe_rules(report["pipe_rules"], report["syscalls_per_task"])
    drains = {r["n"]: r["drain_s"] for r in report["pipe_rules"] if r["drain_s"] is not None}
    print_baselines(report, drains, sizes, report["baseline_sources"])
    report["ratios"] = {name: {n: s / drains[int(n)] for n, s in report[name].items() if int(n) in drains}
                        for name in ("scan", "snakemake")}
    if report.get("xtb"):
        print_xtb(report["xtb"])
    report["targets"] = check_targets(report)
    print("\ntargets:")
    for line in report["targets"]:
        print(f"  {line}")
    m = report["machine"]
    print(f"\nmachine: {m['cores']} cores ({m['cpu']}), {m['host_kind']}, load average "
          f"{m['load_avg_at_start'][0]:.2f} at start, {m['load_avg_at_end'][0]:.2f} at end")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    wait_for_removals()
    missed = [line for line in report["targets"] if line.startswith("MISS")]
    if args.check and missed:
        raise SystemExit(f"{len(missed)} target(s) missed")
    if not all(r["all_completed"] for r in report["pipe_rules"] if not r.get("partial")):
        raise SystemExit("not every task COMPLETED")


if __name__ == "__main__":
    main()
