#!/usr/bin/env python3
"""`pipe-rules status` on a run of N tasks without N task folders: a real run of 4 staged tasks
whose manifest, run record and cost ledgers are then written as a run of N tasks would have them
(N manifest lines of owners with 50 conformers each, `--done` ledger lines of COMPLETED attempts,
2 in-flight tokens). The fast status path reads exactly these (the manifest through the owner
index, the ledgers, the in-flight and ended folders), never a task folder or a pending token, so
this times it at 1,000,000 tasks without staging 5 million inodes (which take hours to remove on
this disk). Prints the fastest of 3 calls of each view and the largest RSS.

    python benchmarks/bench_status_scale.py --tasks 1000000 --done 0 500000 990000
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

from bench_measure import PY, cli, run_all  # noqa: E402
from bench_pipe import CONFORMERS, status_startup_s, write_campaign  # noqa: E402

from pipe_rules.store.layout import RunLayout  # noqa: E402
from pipe_rules.store.runrecord import read_run, update_run  # noqa: E402


def grow(run_dir: Path, n: int) -> list[str]:
    """The run's manifest and run record as for n tasks; returns the task ids in staging order."""
    ids = [f"s{i // CONFORMERS}_conf_opt_{i % CONFORMERS}" for i in range(n)]
    with open(run_dir / "manifest.tsv", "w") as handle:
        for i, task_id in enumerate(ids):
            handle.write(f"{task_id}\tshard-{i % 2:03d}\t{i:064x}\t{json.dumps(f's{i // CONFORMERS}')}\n")
    layout = RunLayout(run_dir)

    def grown(record) -> None:
        record.n_tasks = n

    update_run(layout, read_run(layout).lock_mode, grown)  # run.<generation>.json (store/versioned.py)
    (run_dir / "owner_index.npz").unlink(missing_ok=True)
    return ids


def ledger(run_dir: Path, ids: list[str], done: int) -> None:
    costs = run_dir / "costs"
    shutil.rmtree(costs, ignore_errors=True)
    costs.mkdir()
    for w in range(2):
        with open(costs / f"worker-{w}.tsv", "w") as handle:
            for task_id in ids[w:done:2]:
                handle.write(f"{task_id}\t0\t1\t0.001\t0.001\t30.000\tCOMPLETED\n")
    inflight = run_dir / "queue" / "inflight"
    for name in os.listdir(inflight):
        os.unlink(inflight / name)
    for task_id in ids[done:done + 2]:
        (inflight / task_id).touch()


def timed(run_dir: Path, *extra: str) -> tuple[float, float, dict]:
    procs = [run_all([cli("status", str(run_dir), "--json", *extra)], capture=True)[0] for _ in range(3)]
    return min(p.seconds for p in procs), max(p.peak_rss_mb for p in procs), json.loads(procs[-1].stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--done", type=int, nargs="+", default=[0, 500_000])
    parser.add_argument("--where", type=Path)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-status-", dir=args.where))
    try:
        config = write_campaign(folder, 4, 2)
        run_all([cli("stage", str(config))])
        run_dir = folder / "runs" / "bench" / "main"
        ids = grow(run_dir, args.tasks)
        startup = status_startup_s()
        print(f"status on {args.tasks:,} tasks (python {PY}); its start-up (interpreter + imports) {startup:.2f} s; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        first = True
        for done in args.done:
            ledger(run_dir, ids, done)
            if first:  # the first call builds the owner index from the manifest once (staging does it too)
                run_all([cli("status", str(run_dir), "--json")])
                first = False
            table, owners0 = timed(run_dir), timed(run_dir, "--owners", "0")
            counts = {k: v for k, v in table[2]["tasks"].items() if v}
            print(f"  {done:>9,} COMPLETED in the ledgers: status {table[0]:.2f} s ({table[0] - startup:.2f} s net), "
                  f"{table[1]:.0f} MB, {len(table[2]['owners']):,} owners; --owners 0 {owners0[0]:.2f} s "
                  f"({owners0[0] - startup:.2f} s net), {owners0[1]:.0f} MB; counts {counts}; "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
