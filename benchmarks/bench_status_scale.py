#!/usr/bin/env python3
"""`pipe-rules status` on a run of N tasks without N task folders: a real run of 4 staged tasks
whose manifest, run record and cost ledgers are then written as a run of N tasks would have them
(N manifest lines of owners with 50 conformers each, `--done` ledger lines of COMPLETED attempts,
2 in-flight tokens, and the pending tokens once at most 60,000 are left). The fast status path
reads exactly these (the manifest through the owner index, the ledgers, the in-flight and ended
folders, and the pending tokens only once at most 50,000 are left), never a task folder, so
this times it at 1,000,000 tasks without staging 5 million inodes (which take hours to remove on
this disk). Prints, for each count of COMPLETED lines, the first call (it reads every ledger line
into the ledgers' summary, costs/ledger-summary-v2.npz), then the fastest of 3 calls of each view
(they read only what the ledgers gained since) and the largest RSS.

    python benchmarks/bench_status_scale.py --tasks 1000000 --done 0 500000 940000 1000000 \
        [--baseline-src DIR]   # DIR: `git archive COMMIT | tar -x -C DIR`, timed beside this code
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_measure import PY, cli, run_all, vm_rss_mb  # noqa: E402
from bench_pipe import CONFORMERS, status_startup_s, write_campaign  # noqa: E402

from pipe_rules.store.layout import RunLayout  # noqa: E402
from pipe_rules.store.runrecord import read_run, update_run  # noqa: E402


def task_id(i: int) -> str:
    """The i-th task in staging order (computed, not kept: see `main`)."""
    return f"s{i // CONFORMERS}_conf_opt_{i % CONFORMERS}"


def grow(run_dir: Path, n: int) -> None:
    """The run's manifest and run record as for n tasks."""
    with open(run_dir / "manifest.tsv", "w") as handle:
        for i in range(n):
            handle.write(f"{task_id(i)}\tshard-{i % 2:03d}\t{i:064x}\t{json.dumps(f's{i // CONFORMERS}')}\n")
    layout = RunLayout(run_dir)

    def grown(record) -> None:
        record.n_tasks = n

    update_run(layout, read_run(layout).lock_mode, grown)  # run.<generation>.json (store/versioned.py)
    (run_dir / "owner_index.npz").unlink(missing_ok=True)


TOKENS_BELOW = 60_000  # status lists the pending tokens once at most 50,000 are left: then they exist


def line(i: int) -> str:
    return f"{task_id(i)}\t0\t1\t0.001\t0.001\t30.000\tCOMPLETED\n"


def ledger(run_dir: Path, n: int, done: int) -> None:
    """Tasks 0..done-1 COMPLETED (ledger lines of 2 workers), the next 2 in flight, the rest pending:
    their tokens are written only when at most TOKENS_BELOW are left (above, status never lists them)."""
    costs = run_dir / "costs"
    shutil.rmtree(costs, ignore_errors=True)
    costs.mkdir()
    for w in range(2):
        with open(costs / f"worker-{w}.tsv", "w") as handle:
            handle.writelines(line(i) for i in range(w, done, 2))
    inflight = run_dir / "queue" / "inflight"
    for name in os.listdir(inflight):
        os.unlink(inflight / name)
    for i in range(done, min(done + 2, n)):
        (inflight / task_id(i)).touch()
    layout = RunLayout(run_dir)
    shutil.rmtree(layout.pending_dir)
    layout.pending_dir.mkdir()
    if n - done - 2 <= TOKENS_BELOW:
        for i in range(done + 2, n):
            token = layout.pending_token(f"shard-{i % 2:03d}", task_id(i))
            token.parent.mkdir(parents=True, exist_ok=True)
            token.touch()


def append(run_dir: Path, n: int, start: int, count: int) -> int:
    """`count` more COMPLETED lines from task `start` on (their pending tokens taken); how many."""
    layout = RunLayout(run_dir)
    stop = min(start + count, n)
    with open(run_dir / "costs" / "worker-0.tsv", "a") as handle:
        handle.writelines(line(i) for i in range(start, stop))
    for i in range(start, stop):
        layout.pending_token(f"shard-{i % 2:03d}", task_id(i)).unlink(missing_ok=True)
    return max(0, stop - start)


APPENDED = 10_000


def timed(run_dir: Path, *extra: str, repeat: int = 3, code: dict | None = None) -> tuple[float, float, dict]:
    """Fastest call, largest RSS, and of the output only the counts and the number of owners: this
    process must not keep 20,000 owners' rows (see `main`)."""
    procs = [run_all([cli("status", str(run_dir), "--json", *extra)], capture=True, **(code or {}))[0]
             for _ in range(repeat)]
    out = json.loads(procs[-1].stdout)
    return min(p.seconds for p in procs), max(p.peak_rss_mb for p in procs), \
        {"tasks": out["tasks"], "owners": len(out.get("owners", ()))}


def fastest(calls: list[tuple[float, float, dict]]) -> tuple[float, float, dict]:
    return min(c[0] for c in calls), max(c[1] for c in calls), calls[-1][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--done", type=int, nargs="+", default=[0, 500_000])
    parser.add_argument("--where", type=Path)
    parser.add_argument("--baseline-src", type=Path,
                        help="a source tree of other code (e.g. `git archive COMMIT | tar -x -C DIR`): each status "
                             "call is also made with it (PYTHONPATH, cwd), interleaved, on the same run")
    args = parser.parse_args()
    codes = {"this code": {}}
    if args.baseline_src:
        src = str(args.baseline_src.resolve())
        codes["baseline"] = {"env": dict(os.environ, PYTHONPATH=src), "cwd": src}
    folder = Path(tempfile.mkdtemp(prefix="bench-status-", dir=args.where))
    try:
        config = write_campaign(folder, 4, 2)
        run_all([cli("stage", str(config))])
        run_dir = folder / "runs" / "bench" / "main"
        grow(run_dir, args.tasks)  # the task ids are computed, never held: a child's peak RSS from wait4
        # includes this process's RSS at fork (Linux keeps the pre-exec high-water mark), so this
        # process must stay smaller than the status it measures
        startup = status_startup_s()
        print(f"status on {args.tasks:,} tasks (python {PY}); its start-up (interpreter + imports) {startup:.2f} s; "
              f"this benchmark's own RSS {vm_rss_mb(os.getpid()):.0f} MB; load {os.getloadavg()[0]:.2f}"
              + (f"; baseline: {args.baseline_src}" if args.baseline_src else ""), flush=True)
        ledger(run_dir, args.tasks, 0)
        run_all([cli("status", str(run_dir), "--json")])  # builds the owner index once (staging does it too)
        for done in args.done:
            ledger(run_dir, args.tasks, done)
            cold = {name: timed(run_dir, repeat=1, code=code) for name, code in codes.items()}  # every line read
            tables: dict[str, list] = {name: [] for name in codes}
            bare: dict[str, list] = {name: [] for name in codes}
            for _ in range(3):  # interleaved: the machine's load moves under both alike
                for name, code in codes.items():
                    tables[name].append(timed(run_dir, repeat=1, code=code))
                    bare[name].append(timed(run_dir, "--owners", "0", repeat=1, code=code))
            for name in codes:
                table, owners0 = fastest(tables[name]), fastest(bare[name])
                counts = {k: v for k, v in table[2]["tasks"].items() if v}
                print(f"  {done:>9,} COMPLETED in the ledgers, {name}: first call {cold[name][0]:.2f} s, "
                      f"{cold[name][1]:.0f} MB; then status {table[0]:.2f} s ({table[0] - startup:.2f} s net), "
                      f"{table[1]:.0f} MB, {table[2]['owners']:,} owners; --owners 0 {owners0[0]:.2f} s "
                      f"({owners0[0] - startup:.2f} s net), {owners0[1]:.0f} MB; counts {counts}; "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
            more = append(run_dir, args.tasks, done + 2, APPENDED)
            for name, code in reversed(codes.items()) if more else ():  # a poll during a drain: the new lines
                grown = timed(run_dir, repeat=1, code=code)
                counts = {k: v for k, v in grown[2]["tasks"].items() if v}
                print(f"      then {more:,} lines appended, {name}: status {grown[0]:.2f} s, {grown[1]:.0f} MB; "
                      f"counts {counts}; load {os.getloadavg()[0]:.2f}", flush=True)
        print(f"this benchmark's own RSS at the end {vm_rss_mb(os.getpid()):.0f} MB (a figure above it is the "
              "status's own)", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
