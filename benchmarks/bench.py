#!/usr/bin/env python3
"""pipe_rules throughput benchmark: prints measured times and ratios against baselines.

    python benchmarks/bench.py                        # CI smoke size: 1,000 no-op tasks
    python benchmarks/bench.py --sizes 1000 10000 100000 --scan-sizes 1000 4000 10000 --snakemake-sizes 1000

For each size N it stages N no-op tasks, drains them with W worker processes and ingests them,
then runs the baselines at the sizes asked for:
- scan: ARC's claim loop written here (sorted listing, read every state file, flock CAS), W workers;
- snakemake: one Snakemake job per task (bare shell command), greedy scheduler, W cores;
and, with --xtb N, real GFN2-xTB conf_opt tasks on W workers vs the same tasks one process each.
Timings are wall-clock on a shared machine: read the ratios, not the third digit.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def write_noop_config(folder: Path, n: int, workers: int, engine: str = "noop") -> Path:
    species = [{"label": f"h2_{i}", "xyz": f"H 0 0 0\nH 0 0 {0.5 + i * 1e-6:.7f}"} for i in range(n)]
    config = {"campaign": "bench", "run_root": str(folder / "runs"),
              "defaults": {"engine": engine, "level": "GFN2-xTB", "shards": workers, "lease_s": 300,
                           "heartbeat_s": 30, "linger_s": 0},
              "species": species, "runs": [{"name": "main", "family": "species_sp"}]}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def peak_child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def drain(run_dir: Path, workers: int, strace: bool = False) -> tuple[float, dict]:
    """W `pipe-rules work` processes in parallel; optionally count their file-system syscalls."""
    start = time.perf_counter()
    procs, traces = [], []
    for i in range(workers):
        cmd = [PY, "-m", "pipe_rules", "work", str(run_dir), "--shard", f"shard-{i:03d}", "--no-linger"]
        if strace:
            trace = run_dir.parent / f"strace-{i}.txt"
            traces.append(trace)
            cmd = ["strace", "-f", "-c", "-o", str(trace), *cmd]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"worker exited {proc.returncode}")
    elapsed = time.perf_counter() - start
    return elapsed, _sum_traces(traces)


_META = ("openat", "open", "creat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "link", "linkat",
         "stat", "newfstatat", "lstat", "statx", "mkdir", "mkdirat", "getdents64", "flock")


def _sum_traces(paths: list[Path]) -> dict:
    calls: dict[str, int] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in _META and parts[3].isdigit():
                calls[parts[-1]] = calls.get(parts[-1], 0) + int(parts[3])
    return calls


def bench_pipe_rules(n: int, workers: int, strace: bool) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{n}-"))
    try:
        config = write_noop_config(folder, n, workers)
        run_dir = folder / "runs" / "bench" / "main"
        stage = timed([PY, "-m", "pipe_rules", "stage", str(config)])
        drain_s, _ = drain(run_dir, workers)
        worker_rss = peak_child_rss_mb()
        ingest = timed([PY, "-m", "pipe_rules", "ingest", str(run_dir), "--no-finish"])
        ingest_rss = peak_child_rss_mb()
        status = timed([PY, "-m", "pipe_rules", "status", str(run_dir), "--json"])
        done = json.loads((run_dir / "results" / "records.json").read_text())["task_counts"].get("COMPLETED")
        assert done == n, f"only {done} of {n} tasks completed"
        biggest = max(len(os.listdir(p)) for p, _, _ in os.walk(run_dir))
        result = {"n": n, "stage_s": stage, "drain_s": drain_s, "ingest_s": ingest, "status_s": status,
                  "total_s": stage + drain_s + ingest, "drain_ms_per_task": 1000 * drain_s / n,
                  "peak_rss_mb_worker_or_earlier": worker_rss, "peak_rss_mb_ingest_or_earlier": ingest_rss,
                  "largest_folder_entries": biggest}
        if strace:  # a second, untimed drain under strace: strace slows every syscall down
            traced = folder / "traced"
            traced.mkdir()
            subprocess.run([PY, "-m", "pipe_rules", "stage", str(write_noop_config(traced, n, workers))],
                           check=True, stdout=subprocess.DEVNULL)
            _, calls = drain(traced / "runs" / "bench" / "main", workers, strace=True)
            result["fs_syscalls_per_task"] = {k: round(v / n, 2) for k, v in sorted(calls.items())}
            result["fs_syscalls_per_task_total"] = round(sum(calls.values()) / n, 1)
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench; bench._scan_worker(sys.argv[1], sys.argv[2])"
        start = time.perf_counter()
        procs = [subprocess.Popen([PY, "-c", code, str(folder), f"w{i}"]) for i in range(workers)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_snakemake(n: int, workers: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix=f"smk-{n}-"))
    try:
        (folder / "Snakefile").write_text(
            f'rule all:\n    input: expand("out/{{i}}.txt", i=range({n}))\n\n'
            'rule task:\n    output: "out/{i}.txt"\n    shell: "touch {output}"\n')
        return timed([PY, "-m", "snakemake", "--cores", str(workers), "--scheduler", "greedy", "--quiet", "all"],
                     cwd=folder, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


XTB_POOL = ("CCCC", "CCCO", "CCCCC", "CCOCC", "CCCN", "CC(C)CO", "CCCCO", "COCCO")


def bench_xtb(n: int, workers: int) -> dict:
    """n real GFN2-xTB conf_opt tasks (butane conformers): W workers vs one process per task."""
    folder = Path(tempfile.mkdtemp(prefix="xtb-"))
    try:
        config = {"campaign": "bench", "run_root": str(folder / "runs"),
                  "defaults": {"engine": "tblite", "shards": workers, "linger_s": 0},
                  "species": [{"label": f"s{i}", "smiles": smiles} for i, smiles in enumerate(XTB_POOL)],
                  "runs": [{"name": "main", "family": "conf_opt", "n_conformers": max(1, n // len(XTB_POOL)),
                            "seed": 7}]}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        timed([PY, "-m", "pipe_rules", "stage", str(folder / "config.yaml")])
        run_dir = folder / "runs" / "bench" / "main"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        tasks = len(manifest["tasks"])
        pooled, _ = drain(run_dir, workers)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scan-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--snakemake-sizes", type=int, nargs="*", default=[1000])
    parser.add_argument("--xtb", type=int, default=0, help="also run ~N real xTB conf_opt tasks")
    parser.add_argument("--strace", action="store_true", help="count file-system syscalls of the workers")
    parser.add_argument("--json", type=Path, help="also write all numbers here")
    args = parser.parse_args()
    if args.strace and not shutil.which("strace"):
        raise SystemExit("--strace needs strace (apt-get install strace)")

    report: dict = {"pipe_rules": [], "scan": {}, "snakemake": {}}
    for n in args.sizes:
        r = bench_pipe_rules(n, args.workers, args.strace)
        report["pipe_rules"].append(r)
        print(f"pipe_rules {n:>7} no-op tasks, {args.workers} workers: stage {r['stage_s']:.2f} s, drain "
              f"{r['drain_s']:.2f} s ({r['drain_ms_per_task']:.3f} ms/task), ingest {r['ingest_s']:.2f} s, "
              f"total {r['total_s']:.2f} s; status {r['status_s']:.2f} s; largest folder "
              f"{r['largest_folder_entries']} entries; peak RSS {r['peak_rss_mb_ingest_or_earlier']:.0f} MB"
              + (f"; fs syscalls/task {r['fs_syscalls_per_task_total']}" if "fs_syscalls_per_task" in r else ""),
              flush=True)
    for n in args.scan_sizes:
        report["scan"][n] = bench_scan(n, args.workers)
        print(f"scan baseline {n:>7} tasks: {report['scan'][n]:.2f} s", flush=True)
    for n in args.snakemake_sizes:
        report["snakemake"][n] = bench_snakemake(n, args.workers)
        print(f"snakemake one job per task {n:>7} tasks: {report['snakemake'][n]:.2f} s", flush=True)
    print("\nratios (baseline time / pipe_rules drain time, same N):")
    drains = {r["n"]: r["drain_s"] for r in report["pipe_rules"]}
    for name in ("scan", "snakemake"):
        for n, seconds in report[name].items():
            if n in drains:
                print(f"  {name:>9} at {n:>7}: {seconds / drains[n]:8.1f}x")
    per_task = {r["n"]: r["drain_ms_per_task"] for r in report["pipe_rules"]}
    if len(per_task) > 1:
        small, large = min(per_task), max(per_task)
        print(f"  per-task drain cost {large} vs {small}: {per_task[large] / per_task[small]:.2f}x (target <= 1.5x)")
    if args.xtb:
        x = bench_xtb(args.xtb, args.workers)
        report["xtb"] = x
        print(f"\nxTB conf_opt: {x['tasks']} tasks in {x['pipe_rules_s']:.1f} s on {args.workers} workers "
              f"({x['tasks_per_s']:.2f} tasks/s) vs {x['one_process_per_task_s']:.1f} s one process per task: "
              f"{x['speedup']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
