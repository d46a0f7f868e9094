#!/usr/bin/env python3
"""pipe_rules throughput benchmark: prints measured times, memory, syscalls and ratios against baselines.

    python benchmarks/bench.py                        # CI smoke size: 1,000 no-op tasks
    python benchmarks/bench.py --sizes 1000 10000 100000 --strace --scan-sizes 1000 4000 \\
        --snakemake-sizes 1000 --baselines-from scan10k.json --json bench.json

For each size N it stages N no-op tasks, drains them with W `pipe-rules work` processes and ingests
them (each step its own process, timed, its peak RSS taken), times `pipe-rules status`, checks that
every task is COMPLETED and finds the largest folder of the run. With --strace a second, untimed
pass of the same steps runs under `strace -f -c` and counts file-system metadata calls per task.
Baselines at the sizes asked for:
- scan: ARC's claim loop written here (sorted listing, read every state file, flock CAS), W workers;
- snakemake: one Snakemake job per task (bare shell command), greedy scheduler, W cores;
and, with --xtb N, real GFN2-xTB conf_opt tasks on W workers vs the same tasks one process each.
--baselines-from merges baseline times measured by an earlier run (e.g. the 10-minute scan at
10,000) into the tables. Timings are wall-clock on a shared machine: read the ratios, not the third digit.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET_TOTAL_S_100K = 300.0  # 100,000 tasks staged, drained and ingested in under 5 minutes
TARGET_PER_TASK_RATIO = 1.5  # per-task cost, largest vs smallest size
TARGET_DRAIN_MS = 1.0  # per no-op task, 2 workers
TARGET_SCAN_RATIO = 50.0  # scan baseline / pipe_rules drain at 10,000


# --- running and measuring child processes -----------------------------------------------------


@dataclass
class Proc:
    seconds: float
    peak_rss_mb: float


def _vm_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def run_all(cmds: list[list[str]], **popen) -> list[Proc]:
    """Start the commands together, wait for all; wall time of the group and each one's peak RSS.

    Peak RSS is the larger of the kernel's figure for the child (wait4) and VmRSS sampled every
    50 ms: workers reset their own high-water mark per task to measure each task's memory. The
    kernel's figure never falls below this script's RSS at the fork, so this script stays small."""
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, **popen) for cmd in cmds]
    sampled = {p.pid: 0.0 for p in procs}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid, peak in sampled.items():
                sampled[pid] = max(peak, _vm_rss_mb(pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    peaks = {}
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        peaks[proc.pid] = usage.ru_maxrss / 1024
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    for proc, cmd in zip(procs, cmds):
        if proc.returncode != 0:
            raise SystemExit(f"exit {proc.returncode}: {shlex.join(cmd)}")
    return [Proc(elapsed, max(peaks[p.pid], sampled[p.pid])) for p in procs]


def cli(*args: str) -> list[str]:
    return [PY, "-m", "pipe_rules", *args]


def worker_cmds(run_dir: Path, workers: int) -> list[list[str]]:
    return [cli("work", str(run_dir), "--shard", f"shard-{i:03d}", "--no-linger") for i in range(workers)]


# --- file-system syscalls ----------------------------------------------------------------------

_META = ("openat", "open", "creat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "link", "linkat",
         "stat", "newfstatat", "lstat", "statx", "access", "faccessat", "faccessat2", "mkdir", "mkdirat",
         "rmdir", "getdents64", "flock", "utimensat")


def _sum_traces(paths: list[Path]) -> dict[str, int]:
    """Metadata calls summed over `strace -c` summaries (columns: % seconds usecs calls [errors] name)."""
    calls: dict[str, int] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in _META and parts[3].isdigit():
                calls[parts[-1]] = calls.get(parts[-1], 0) + int(parts[3])
    return calls


def traced(cmds: list[list[str]], folder: Path, tag: str) -> dict[str, int]:
    traces = [folder / f"strace-{tag}-{i}.txt" for i in range(len(cmds))]
    run_all([["strace", "-f", "-c", "-o", str(t), *cmd] for t, cmd in zip(traces, cmds)])
    return _sum_traces(traces)


def _baseline_calls() -> dict[str, int]:
    """What importing pipe_rules and starting the CLI costs with no run at all (subtracted per process)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-strace-"))
    try:
        trace = folder / "t.txt"
        subprocess.run(["strace", "-f", "-c", "-o", str(trace), *cli("--help")], check=True,
                       stdout=subprocess.DEVNULL)
        return _sum_traces([trace])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- pipe_rules ----------------------------------------------------------------------------------


def write_noop_config(folder: Path, n: int, workers: int) -> Path:
    species = [{"label": f"h2_{i}", "xyz": f"H 0 0 0\nH 0 0 {0.5 + i * 1e-6:.7f}"} for i in range(n)]
    config = {"campaign": "bench", "run_root": str(folder / "runs"),
              "defaults": {"engine": "noop", "level": "GFN2-xTB", "shards": workers, "lease_s": 300,
                           "heartbeat_s": 30, "linger_s": 0},
              "species": species, "runs": [{"name": "main", "family": "species_sp"}]}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def config_in_child(folder: Path, n: int, workers: int) -> Path:
    """Write the config from a child process. A child's peak RSS (ru_maxrss) starts at its parent's
    RSS when it forks, so this process must stay small: it never holds N species or N records."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench, pathlib; "
            "bench.write_noop_config(pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))")
    subprocess.run([PY, "-c", code, str(folder), str(n), str(workers)], check=True)
    return folder / "config.yaml"


def completed_in_records(records: Path) -> int:
    code = "import json, sys; print(json.load(open(sys.argv[1]))['task_counts'].get('COMPLETED', 0))"
    return int(subprocess.run([PY, "-c", code, str(records)], check=True, capture_output=True, text=True).stdout)


def timed_status(run_dir: Path, *extra: str) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run(cli("status", str(run_dir), "--json", *extra), check=True, capture_output=True, text=True)
    return time.perf_counter() - start, json.loads(out.stdout)


def largest_folder(root: Path) -> tuple[int, str]:
    best = (0, "")
    for folder, subdirs, names in os.walk(root):
        best = max(best, (len(subdirs) + len(names), os.path.relpath(folder, root)))
    return best


def bench_pipe_rules(n: int, workers: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{n}-"))
    try:
        config = config_in_child(folder, n, workers)
        run_dir = folder / "runs" / "bench" / "main"
        stage = run_all([cli("stage", str(config))])[0]
        drain = run_all(worker_cmds(run_dir, workers))
        ingest = run_all([cli("ingest", str(run_dir), "--no-finish")])[0]
        status_first, status = timed_status(run_dir)  # builds and caches the per-owner index
        status_again, _ = timed_status(run_dir)
        status_counts_only, _ = timed_status(run_dir, "--owners", "0")
        startup = run_all(worker_cmds(run_dir, workers))[0].seconds  # nothing left: start, look, exit
        completed = {"records": completed_in_records(run_dir / "results" / "records.json"),
                     "status": status["tasks"].get("COMPLETED", 0)}
        entries, where = largest_folder(run_dir)
        drain_s = drain[0].seconds
        total = stage.seconds + drain_s + ingest.seconds
        return {"n": n, "workers": workers, "stage_s": stage.seconds, "drain_s": drain_s,
                "ingest_s": ingest.seconds, "total_s": total, "status_s": status_again,
                "status_first_s": status_first, "status_owners0_s": status_counts_only,
                "drain_ms_per_task": 1000 * drain_s / n, "total_ms_per_task": 1000 * total / n,
                "worker_startup_s": startup, "drain_net_ms_per_task": 1000 * max(drain_s - startup, 0.0) / n,
                "peak_rss_mb": {"stage": stage.peak_rss_mb, "worker": max(p.peak_rss_mb for p in drain),
                                "ingest": ingest.peak_rss_mb, "this_script": _vm_rss_mb(os.getpid())},
                "records_json_mb": (run_dir / "results" / "records.json").stat().st_size / 2**20,
                "completed": completed, "all_completed": completed["records"] == n == completed["status"],
                "largest_folder": {"entries": entries, "path": where}}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_syscalls(n: int, workers: int, base: dict[str, int]) -> dict:
    """The same stage, drain and ingest under `strace -f -c` (untimed: strace slows every call)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-strace-{n}-"))
    try:
        config = config_in_child(folder, n, workers)
        run_dir = folder / "runs" / "bench" / "main"
        steps = {"stage": [cli("stage", str(config))], "drain": worker_cmds(run_dir, workers),
                 "ingest": [cli("ingest", str(run_dir), "--no-finish")]}
        per_task = {}
        for step, cmds in steps.items():
            calls = traced(cmds, folder, step)
            net = {k: v - base.get(k, 0) * len(cmds) for k, v in calls.items()}
            per_task[step] = {k: round(v / n, 2) for k, v in sorted(net.items()) if v > 0}
        per_task["total"] = {step: round(sum(v.values()), 1) for step, v in per_task.items()}
        return per_task
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- baselines -----------------------------------------------------------------------------------


def _scan_worker(root: str, name: str) -> None:
    """ARC's claim: list the sorted task folder, read every state, lock + CAS the first PENDING one."""
    tasks = Path(root)
    while True:
        claimed = None
        for task in sorted(os.listdir(tasks)):
            state_path = tasks / task / "state.json"
            if json.loads(state_path.read_text())["status"] != "PENDING":
                continue
            with open(tasks / task / "state.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                state = json.loads(state_path.read_text())
                if state["status"] == "PENDING":
                    _replace(state_path, {"status": "CLAIMED", "by": name})
                    claimed = task
                fcntl.flock(lock, fcntl.LOCK_UN)
            if claimed:
                break
        if claimed is None:
            return
        with open(tasks / claimed / "state.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _replace(tasks / claimed / "state.json", {"status": "COMPLETED", "by": name})
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replace(path: Path, data: dict) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def bench_scan(n: int, workers: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix=f"scan-{n}-"))
    try:
        for i in range(n):
            (folder / f"t{i:07d}").mkdir()
            (folder / f"t{i:07d}" / "state.json").write_text('{"status": "PENDING"}')
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench; "
                "bench._scan_worker(sys.argv[1], sys.argv[2])")
        procs = run_all([[PY, "-c", code, str(folder), f"w{i}"] for i in range(workers)])
        left = sum(json.loads((folder / t / "state.json").read_text())["status"] != "COMPLETED"
                   for t in os.listdir(folder))
        if left:
            raise SystemExit(f"scan baseline left {left} tasks not COMPLETED")
        return procs[0].seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_snakemake(n: int, workers: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix=f"smk-{n}-"))
    try:
        (folder / "Snakefile").write_text(
            f'rule all:\n    input: expand("out/{{i}}.txt", i=range({n}))\n\n'
            'rule task:\n    output: "out/{i}.txt"\n    shell: "touch {output}"\n')
        return run_all([[PY, "-m", "snakemake", "--cores", str(workers), "--scheduler", "greedy", "--quiet",
                         "all"]], cwd=folder, stderr=subprocess.DEVNULL)[0].seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


XTB_POOL = ("CCCC", "CCCO", "CCCCC", "CCOCC", "CCCN", "CC(C)CO", "CCCCO", "COCCO")


def bench_xtb(n: int, workers: int) -> dict:
    """~n real GFN2-xTB conf_opt tasks (small molecules' conformers): W workers vs one process per task."""
    folder = Path(tempfile.mkdtemp(prefix="xtb-"))
    try:
        config = {"campaign": "bench", "run_root": str(folder / "runs"),
                  "defaults": {"engine": "tblite", "shards": workers, "linger_s": 0},
                  "species": [{"label": f"s{i}", "smiles": smiles} for i, smiles in enumerate(XTB_POOL)],
                  "runs": [{"name": "main", "family": "conf_opt", "n_conformers": max(1, n // len(XTB_POOL)),
                            "seed": 7}]}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        run_all([cli("stage", str(folder / "config.yaml"))])
        run_dir = folder / "runs" / "bench" / "main"
        tasks = len(json.loads((run_dir / "manifest.json").read_text())["tasks"])
        pooled = run_all(worker_cmds(run_dir, workers))[0].seconds
        code = ("import json, sys, tempfile, pathlib; from pipe_rules.engines import get_engine; "
                "s = json.load(open(sys.argv[1])); get_engine('tblite').run(s['family'], s['level'], "
                "s['input_payload'], s['options'], pathlib.Path(tempfile.mkdtemp()), 1)")
        specs = sorted(run_dir.glob("tasks/*/*/spec.json"))
        start = time.perf_counter()
        for spec in specs:
            subprocess.run([PY, "-c", code, str(spec)], check=True)
        one_by_one = time.perf_counter() - start
        return {"tasks": tasks, "pipe_rules_s": pooled, "one_process_per_task_s": one_by_one,
                "tasks_per_s": tasks / pooled, "speedup": one_by_one / pooled}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- report --------------------------------------------------------------------------------------


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

    def row(name: str, values: list[float], fmt: str, ratio_of: str | None = None) -> tuple[str, list[str]]:
        cells = [fmt.format(v) for v in values]
        if ratio:
            cells.append(f"{values[-1] / values[0]:.2f}x" if ratio_of and values[0] else "")
        return name, cells

    rows = [
        row("stage (s)", [r["stage_s"] for r in results], "{:.2f}"),
        row("drain (s)", [r["drain_s"] for r in results], "{:.2f}"),
        row("ingest (s)", [r["ingest_s"] for r in results], "{:.2f}"),
        row("stage+drain+ingest (s)", [r["total_s"] for r in results], "{:.2f}"),
        row("drain per task (ms)", [r["drain_ms_per_task"] for r in results], "{:.3f}", "ratio"),
        row("stage+drain+ingest per task (ms)", [r["total_ms_per_task"] for r in results], "{:.3f}", "ratio"),
        row("workers' start-up and exit, no task (s)", [r["worker_startup_s"] for r in results], "{:.2f}"),
        row("drain per task net of start-up (ms)", [r["drain_net_ms_per_task"] for r in results], "{:.3f}", "ratio"),
        row("`pipe-rules status --json`, first call (s)", [r["status_first_s"] for r in results], "{:.2f}"),
        row("`pipe-rules status --json` (s)", [r["status_s"] for r in results], "{:.2f}"),
        row("`pipe-rules status --json --owners 0` (s)", [r["status_owners0_s"] for r in results], "{:.2f}"),
        row("peak RSS stage (MB)", [r["peak_rss_mb"]["stage"] for r in results], "{:.0f}"),
        row("peak RSS worker (MB)", [r["peak_rss_mb"]["worker"] for r in results], "{:.0f}"),
        row("peak RSS ingest (MB)", [r["peak_rss_mb"]["ingest"] for r in results], "{:.0f}"),
        row("records.json (MB)", [r["records_json_mb"] for r in results], "{:.1f}"),
        row("largest folder (entries)", [r["largest_folder"]["entries"] for r in results], "{:d}"),
    ]
    for step in ("stage", "drain", "ingest"):
        if all(n in syscalls for n in sizes):
            rows.append(row(f"fs metadata syscalls/task, {step}", [syscalls[n]["total"][step] for n in sizes],
                            "{:.1f}", "ratio"))
    header = [f"pipe_rules, no-op tasks, {small['workers']} workers"] + [f"{n:,}" for n in sizes]
    _table(rows, header + ([f"{large['n']:,} vs {small['n']:,}"] if ratio else []))
    for r in results:
        c = r["completed"]
        print(f"check {r['n']:>7,}: {c['records']} of {r['n']} tasks COMPLETED in records.json, {c['status']} in "
              f"status; largest folder {r['largest_folder']['entries']} entries ({r['largest_folder']['path']})")
    for n in sizes:
        if n in syscalls:
            detail = ", ".join(f"{k} {v}" for k, v in syscalls[n]["drain"].items())
            print(f"syscalls per task in the drain at {n:,}: {detail}")


def print_baselines(report: dict, drains: dict[int, float], sizes: list[int], sources: dict) -> None:
    print("\nbaselines (same N, 2 workers / 2 cores) vs pipe_rules drain:")
    for name, label in (("scan", "scan-claim (ARC's loop)"), ("snakemake", "Snakemake, one job per task")):
        measured = {int(n): s for n, s in report[name].items()}
        for n in sorted(measured):
            ratio = f"{measured[n] / drains[n]:8.1f}x slower than pipe_rules" if n in drains else \
                "(pipe_rules not run at this size)"
            origin = f"  [from {sources[name][n]}]" if n in sources.get(name, {}) else ""
            print(f"  {label:<28} {n:>7,} tasks: {measured[n]:9.2f} s  {ratio}{origin}")
        for n in sizes:
            if n not in measured and measured:
                top = max(measured)
                grow = (n / top) ** 2 if name == "scan" else n / top
                print(f"  {label:<28} {n:>7,} tasks: not run (extrapolated ~{measured[top] * grow:,.0f} s from "
                      f"{top:,}: {'quadratic' if name == 'scan' else 'linear, plus a DAG of N jobs'})")


def check_targets(report: dict) -> list[str]:
    results = report["pipe_rules"]
    lines = []

    def target(ok: bool, text: str) -> None:
        lines.append(f"{'MET ' if ok else 'MISS'} {text}")

    by_n = {r["n"]: r for r in results}
    for r in results:
        target(r["drain_ms_per_task"] <= TARGET_DRAIN_MS,
               f"drain <= {TARGET_DRAIN_MS} ms/task at {r['n']:,}: {r['drain_ms_per_task']:.3f} "
               f"({r['drain_net_ms_per_task']:.3f} net of the workers' start-up)")
    if 100000 in by_n:
        target(by_n[100000]["total_s"] < TARGET_TOTAL_S_100K,
               f"100,000 staged+drained+ingested < {TARGET_TOTAL_S_100K:.0f} s: {by_n[100000]['total_s']:.1f} s")
    if len(results) > 1:
        small, large = results[0], results[-1]
        for key in ("drain_ms_per_task", "total_ms_per_task"):
            ratio = large[key] / small[key]
            target(ratio <= TARGET_PER_TASK_RATIO,
                   f"{key} {large['n']:,} vs {small['n']:,} within {TARGET_PER_TASK_RATIO}x: {ratio:.2f}x")
    scan = {int(n): s for n, s in report["scan"].items()}
    if 10000 in scan and 10000 in by_n:
        ratio = scan[10000] / by_n[10000]["drain_s"]
        target(ratio >= TARGET_SCAN_RATIO, f">= {TARGET_SCAN_RATIO:.0f}x faster than the scan baseline at 10,000: "
                                           f"{ratio:.0f}x")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scan-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--snakemake-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--xtb", type=int, default=0, help="also run ~N real xTB conf_opt tasks")
    parser.add_argument("--strace", action="store_true", help="count file-system syscalls per task (extra pass)")
    parser.add_argument("--baselines-from", type=Path, action="append", default=[],
                        help="a --json file of an earlier run whose scan/snakemake times are shown too")
    parser.add_argument("--json", type=Path, help="also write all numbers here")
    args = parser.parse_args()
    if args.strace and not shutil.which("strace"):
        raise SystemExit("--strace needs strace (apt-get install strace)")

    sizes = sorted(args.sizes)
    report: dict = {"command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]), "machine": machine(),
                    "pipe_rules": [], "syscalls_per_task": {}, "scan": {}, "snakemake": {}, "baseline_sources": {}}
    for n in sizes:
        r = bench_pipe_rules(n, args.workers)
        report["pipe_rules"].append(r)
        print(f"pipe_rules {n:>7,} tasks: stage {r['stage_s']:.2f} s, drain {r['drain_s']:.2f} s "
              f"({r['drain_ms_per_task']:.3f} ms/task), ingest {r['ingest_s']:.2f} s, total {r['total_s']:.2f} s, "
              f"status {r['status_first_s']:.2f} s first call, {r['status_s']:.2f} s after", flush=True)
    if args.strace and sizes:
        base = _baseline_calls()
        for n in sizes:
            report["syscalls_per_task"][n] = bench_syscalls(n, args.workers, base)
            print(f"syscalls per task at {n:,}: {report['syscalls_per_task'][n]['total']}", flush=True)
    for n in args.scan_sizes:
        report["scan"][n] = bench_scan(n, args.workers)
        print(f"scan baseline {n:>7,} tasks: {report['scan'][n]:.2f} s", flush=True)
    for n in args.snakemake_sizes:
        report["snakemake"][n] = bench_snakemake(n, args.workers)
        print(f"snakemake one job per task {n:>7,} tasks: {report['snakemake'][n]:.2f} s", flush=True)
    for path in args.baselines_from:
        earlier = json.loads(path.read_text())
        for name in ("scan", "snakemake"):
            for n, seconds in earlier.get(name, {}).items():
                if int(n) not in report[name]:
                    report[name][int(n)] = seconds
                    report["baseline_sources"].setdefault(name, {})[int(n)] = str(path)
    report["machine"]["load_avg_at_end"] = list(os.getloadavg())

    print()
    if report["pipe_rules"]:
        print_pipe_rules(report["pipe_rules"], report["syscalls_per_task"])
    drains = {r["n"]: r["drain_s"] for r in report["pipe_rules"]}
    print_baselines(report, drains, sizes, report["baseline_sources"])
    report["ratios"] = {name: {n: s / drains[int(n)] for n, s in report[name].items() if int(n) in drains}
                        for name in ("scan", "snakemake")}
    if args.xtb:
        x = bench_xtb(args.xtb, args.workers)
        report["xtb"] = x
        print(f"\nxTB conf_opt: {x['tasks']} tasks in {x['pipe_rules_s']:.1f} s on {args.workers} workers "
              f"({x['tasks_per_s']:.2f} tasks/s) vs {x['one_process_per_task_s']:.1f} s one process per task: "
              f"{x['speedup']:.1f}x")
    report["targets"] = check_targets(report)
    print("\ntargets:")
    for line in report["targets"]:
        print(f"  {line}")
    m = report["machine"]
    print(f"\nmachine: {m['cores']} cores ({m['cpu']}), {m['host_kind']}, load average "
          f"{m['load_avg_at_start'][0]:.2f} at start, {m['load_avg_at_end'][0]:.2f} at end")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if not all(r["all_completed"] for r in report["pipe_rules"]):
        raise SystemExit("not every task COMPLETED")


if __name__ == "__main__":
    main()
