#!/usr/bin/env python3
"""Encoding and decoding cost of the per-task files, in microseconds per call (the hot path's share).

    python benchmarks/codec_bench.py [--repeat 2000] [--json FILE]

Stages one real no-op task in a tmpfs folder (/dev/shm, so the disk's noise stays out), runs it
once, then times the calls a worker and ingestion make for every task: read the spec, read and
write the state, write and read the result, read and write run.json. Each number is the median of
7 rounds of `--repeat` calls, in CPU time of this process (user + system: what the call costs,
and what a loaded shared machine disturbs least); the wall-clock median is printed beside it. The
end-to-end view of the same cost is `bench.py` (drain ms/task).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipe_rules.execution.worker import run_worker  # noqa: E402
from pipe_rules.inputs.config import load_campaign  # noqa: E402
from pipe_rules.inputs.staging import stage_run  # noqa: E402
from pipe_rules.store.fsio import atomic_write_json  # noqa: E402
from pipe_rules.store.layout import RunLayout  # noqa: E402
from pipe_rules.store.manifest import manifest_task_ids  # noqa: E402
from pipe_rules.store.runrecord import read_run  # noqa: E402
from pipe_rules.store.task_files import load_spec, read_result, write_result  # noqa: E402
from pipe_rules.store.taskstate import read_state  # noqa: E402

ROUNDS = 7


def per_call_us(call, repeat: int) -> tuple[float, float]:
    """(CPU us, wall us) per call, each the median of ROUNDS rounds."""
    cpu, wall = [], []
    for _ in range(ROUNDS):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(repeat):
            call()
        cpu.append((time.process_time() - start_cpu) / repeat * 1e6)
        wall.append((time.perf_counter() - start) / repeat * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def staged_task(folder: Path) -> tuple[RunLayout, str]:
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({
        "campaign": "codec", "run_root": str(folder / "runs"),
        "defaults": {"engine": "noop", "shards": 1, "lease_s": 30, "heartbeat_s": 1, "linger_s": 0},
        "species": [{"label": "water", "xyz": "O 0 0 0.117\nH 0 0.757 -0.469\nH 0 -0.757 -0.469"}],
        "runs": [{"name": "main", "family": "species_sp"}]}))
    campaign = load_campaign(config)
    stage_run(campaign, "main")
    layout = RunLayout(campaign.run_dir("main"))
    run_worker(layout.root, install_signals=False, linger=False)
    return layout, manifest_task_ids(layout)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="pipe_rules_codec_", dir=base))
    try:
        layout, task_id = staged_task(folder)
        state = read_state(layout, task_id)
        result_path = layout.result(task_id, state.attempt_index)
        result = read_result(result_path)
        run = read_run(layout)
        copy = folder / "result-copy.json"
        record = _result_record(result)
        numbers = {
            "spec: read + validate (load_spec)": per_call_us(lambda: load_spec(layout.spec(task_id)), args.repeat),
            "state: read + check (read_state)": per_call_us(lambda: read_state(layout, task_id), args.repeat),
            "state: encode + atomic write": per_call_us(
                lambda: atomic_write_json(layout.state(task_id), state.as_dict()), args.repeat),
            "result: read + validate (read_result)": per_call_us(lambda: read_result(result_path), args.repeat),
            "result: validate + encode + atomic write (write_result)": per_call_us(
                lambda: write_result(copy, record), args.repeat),
            "run.json: read (read_run)": per_call_us(lambda: read_run(layout), args.repeat),
            "run.json: encode + atomic write": per_call_us(
                lambda: atomic_write_json(folder / "run-copy.json", run.as_dict(), pretty=True), args.repeat),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    width = max(map(len, numbers))
    print(f"per call, median of {ROUNDS} x {args.repeat} calls, files on {base or tempfile.gettempdir()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'':<{width}}  {'CPU':>8}     {'wall':>8}")
    for name, (cpu, wall) in numbers.items():
        print(f"{name:<{width}}  {cpu:8.1f} us  {wall:8.1f} us")
    if args.json:
        args.json.write_text(json.dumps({"cpu_us_per_call": {k: v[0] for k, v in numbers.items()},
                                         "wall_us_per_call": {k: v[1] for k, v in numbers.items()},
                                         "repeat": args.repeat,
                                         "load_average": os.getloadavg()[0]}, indent=1))
    return 0


def _result_record(data: dict):
    """The record a worker writes, rebuilt from the result it wrote (the class lives in contracts)."""
    from pipe_rules.contracts.result import ResultRecord

    return ResultRecord(**data) if not hasattr(ResultRecord, "model_validate") else ResultRecord.model_validate(data)


if __name__ == "__main__":
    raise SystemExit(main())
