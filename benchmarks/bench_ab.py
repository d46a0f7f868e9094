"""Two versions of pipe_rules drain the same no-op campaign, interleaved, so both see the same load.

On the shared 2-core machine the load moves by 2-3x within minutes, so a drain measured an hour
after another says little about the code. Here one worker drains N tasks with the OLD source tree,
then with the NEW one, R rounds; each drain is followed by the floor (write + rename of 300 B) on
the same disk. Each tree is a plain source folder (e.g. `git archive <commit> | tar -x -C DIR`) put
first on PYTHONPATH.

    python benchmarks/bench_ab.py --old /tmp/base --new /tmp/after --tasks 4000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_measure import floor_ms  # noqa: E402
from bench_pipe import write_campaign  # noqa: E402


def drain_once(tree: Path, n: int, where: Path | None) -> tuple[float, float, float]:
    """(ms per task, floor ms, load at start) of one worker draining n staged no-op tasks."""
    folder = Path(tempfile.mkdtemp(prefix="ab-", dir=where))
    env = dict(os.environ, PYTHONPATH=str(tree))
    try:
        config = write_campaign(folder, n, 1)
        subprocess.run([sys.executable, "-m", "pipe_rules", "stage", str(config)], env=env, cwd=folder,
                       check=True, capture_output=True)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipe_rules", "work", str(folder / "runs" / "bench" / "main"),
                        "--shard", "shard-000", "--no-linger"], env=env, cwd=folder, check=True, capture_output=True)
        ms = (time.perf_counter() - start) * 1000 / n
        return ms, floor_ms(folder), load
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, required=True)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--where", type=Path)
    args = parser.parse_args()
    seen: dict[str, list[tuple[float, float, float]]] = {"old": [], "new": []}
    for r in range(1, args.rounds + 1):
        for side, tree in (("old", args.old), ("new", args.new)):
            ms, floor, load = drain_once(tree.resolve(), args.tasks, args.where)
            seen[side].append((ms, floor, load))
            print(f"round {r} {side}: {ms:.3f} ms/task (1 worker, gross), floor {floor:.3f} ms, load {load:.2f}",
                  flush=True)
    for side in ("old", "new"):
        ms = statistics.median(m for m, _, _ in seen[side])
        floor = statistics.median(f for _, f, _ in seen[side])
        print(f"{side}: median {ms:.3f} ms/task, median floor {floor:.3f} ms ({ms / floor:.1f}x)")
    old = statistics.median(m for m, _, _ in seen["old"])
    new = statistics.median(m for m, _, _ in seen["new"])
    print(f"new / old: {new / old:.2f}x")


if __name__ == "__main__":
    main()
