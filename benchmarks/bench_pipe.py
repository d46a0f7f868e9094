"""The pipe_rules part of bench.py: N no-op tasks staged, drained by W workers and ingested, each step
its own process, arriving as a big campaign does: a JSON Lines tasks file of owners with 50
conformers each (20,000 species x 50 conformers at 1,000,000), written and staged as streams."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import yaml
from bench_measure import PY, cli, floor_ms, help_calls, inodes, largest_folder, run_all, traced, vm_rss_mb

CONFORMERS = 50  # tasks per owner


def write_tasks_file(path: Path, n: int, sleep_s: float = 0.0) -> None:
    """N ready conf_opt specs (noop engine) of ceil(N/50) owners, one JSON line each; each task
    sleeps `sleep_s` (the noop engine reads it from the payload)."""
    from pipe_rules.contracts.spec import fingerprint  # only in the child that writes the file

    with open(path, "w") as handle:
        for i in range(n):
            owner, conformer = divmod(i, CONFORMERS)
            payload = {"xyz": {"symbols": ["H", "H"], "isotopes": [1, 1],
                               "coords": [[0.0, 0.0, 0.0], [owner * 1e-4, 0.0, 0.5 + conformer * 1e-3]]},
                       "charge": 0, "multiplicity": 1}
            if sleep_s:
                payload["sleep_s"] = sleep_s
            spec = {"schema_version": 1, "task_id": f"s{owner}_conf_opt_{conformer}", "family": "conf_opt",
                    "owner_type": "species", "owner_key": f"s{owner}", "engine": "noop", "level": "GFN2-xTB",
                    "cores": 1, "memory_mb": 2000, "walltime_min": 60, "input_payload": payload,
                    "ingestion_metadata": {"conformer_index": conformer}, "options": {},
                    "fingerprint": fingerprint("conf_opt", "noop", "GFN2-xTB", {}, payload)}
            handle.write(json.dumps(spec, separators=(",", ":")) + "\n")


def write_campaign(folder: Path, n: int, workers: int, sleep_s: float = 0.0) -> Path:
    """In a child process, so this script never holds N specs. `sleep_s`: how long each no-op task
    lasts (in its payload: a tasks file's specs are complete, the run's options do not reach them)."""
    code = (f"import sys, pathlib; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_pipe; "
            "bench_pipe.write_tasks_file(pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))")
    subprocess.run([PY, "-c", code, str(folder / "tasks.jsonl"), str(n), repr(float(sleep_s))], check=True)
    config = {"campaign": "bench", "run_root": str(folder / "runs"),
              "defaults": {"engine": "noop", "level": "GFN2-xTB", "shards": workers, "lease_s": 300,
                           "heartbeat_s": 30, "linger_s": 0},
              "runs": [{"name": "main", "family": "conf_opt", "tasks_file": "tasks.jsonl"}]}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def worker_cmds(run_dir: Path, workers: int) -> list[list[str]]:
    return [cli("work", str(run_dir), "--shard", f"shard-{i:03d}", "--no-linger") for i in range(workers)]


def completed_in_records(run_dir: Path) -> int:
    code = "import json, sys; print(json.load(open(sys.argv[1]))['task_counts'].get('COMPLETED', 0))"
    out = subprocess.run([PY, "-c", code, str(run_dir / "results" / "summary.json")], check=True,
                         capture_output=True, text=True).stdout
    return int(out)


STATUS_IMPORTS = ("import numpy, orjson, pipe_rules.cli.main, pipe_rules.reporting.status, pipe_rules.store.owner_index, "
                  "pipe_rules.store.ledger, pipe_rules.store.ledger_summary")


def status_startup_s() -> float:
    """What `status` costs before it reads anything: the interpreter and its imports (no run at all)."""
    return min(run_all([[PY, "-c", STATUS_IMPORTS]])[0].seconds for _ in range(2))


def status_step(run_dir: Path, *extra: str, repeat: int = 1) -> tuple[float, float, dict]:
    """The fastest of `repeat` calls (one slow call on a shared machine says nothing), the largest RSS."""
    procs = [run_all([cli("status", str(run_dir), "--json", *extra)], capture=True)[0] for _ in range(repeat)]
    return min(p.seconds for p in procs), max(p.peak_rss_mb for p in procs), json.loads(procs[-1].stdout)


def _said(n: int, step: str, proc, extra: str = "") -> None:
    """One line per step as it ends (a long run's numbers survive an interrupted benchmark)."""
    print(f"  {n:>9,} {step}: {proc.seconds:.2f} s, peak RSS {proc.peak_rss_mb:.0f} MB{extra}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)


def ledger_lines(run_dir: Path) -> int:
    total = 0
    for path in (run_dir / "costs").glob("*.tsv"):
        with open(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total


def partial_drain(run_dir: Path, workers: int, seconds: float) -> dict:
    """W workers on a run too big to drain here: tasks per second between a warm-up (a third of
    the window, at most 30 s) and the end of the window, counted from the cost ledgers (one line per
    task), `status` timed meanwhile, each worker's peak RSS sampled; then SIGTERM (each hands its
    task back and exits)."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for cmd in worker_cmds(run_dir, workers)]
    peaks = {p.pid: 0.0 for p in procs}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in peaks:
                peaks[pid] = max(peaks[pid], vm_rss_mb(pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        start = time.perf_counter()
        time.sleep(min(30.0, seconds / 3))
        lines0, t0 = ledger_lines(run_dir), time.perf_counter()
        status_mid = status_step(run_dir, repeat=2)
        print(f"  status mid-drain ({status_mid[2]['tasks']['PENDING']:,} pending): {status_mid[0]:.2f} s, "
              f"{status_mid[1]:.0f} MB", flush=True)
        time.sleep(max(0.0, seconds - (time.perf_counter() - start)))
        lines1, t1 = ledger_lines(run_dir), time.perf_counter()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        done.set()
        sampler.join()
    tasks = lines1 - lines0
    return {"window_s": t1 - t0, "tasks_in_window": tasks, "ms_per_task": 1000 * (t1 - t0) / max(tasks, 1),
            "completed_total": lines1, "status_mid": status_mid, "worker_peak_rss_mb": max(peaks.values())}


def stage_and_status(folder: Path, n: int, workers: int, sleep_s: float = 0.0):
    """Stage the n-task campaign in `folder`, then time status with every task pending (the most
    tokens to count): (run folder, the stage's Measured, status (seconds, MB))."""
    config = write_campaign(folder, n, workers, sleep_s)
    run_dir = folder / "runs" / "bench" / "main"
    stage = run_all([cli("stage", str(config))])[0]
    _said(n, "stage", stage)
    status_pending = status_step(run_dir, repeat=2)
    print(f"  {n:>9,} status, all pending: {status_pending[0]:.2f} s, {status_pending[1]:.0f} MB", flush=True)
    return run_dir, stage, status_pending


def bench_partial(n: int, workers: int, where: Path | None, drain_s: float, sleep_s: float = 0.0) -> dict:
    """A size too big to drain on this machine: staged, status timed with every task pending, then
    `partial_drain` for `drain_s` seconds (its rate judged as the drain per task); no ingestion.
    `sleep_s` slows every task (a small run must outlast the window's warm-up)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{n}-", dir=where))
    try:
        run_dir, stage, status_pending = stage_and_status(folder, n, workers, sleep_s)
        floor_before = floor_ms(folder)
        drain = partial_drain(run_dir, workers, drain_s)
        floor_after = floor_ms(folder)
        floor = (floor_before + floor_after) / 2
        per_worker_ms = drain["ms_per_task"] * workers
        print(f"  {n:>9,} drain for {drain_s:.0f} s: {drain['tasks_in_window']:,} tasks in {drain['window_s']:.1f} s "
              f"after the warm-up: {drain['ms_per_task']:.3f} ms/task, {per_worker_ms / floor:.1f}x the floor "
              f"({floor_before:.3f}/{floor_after:.3f} ms), worker peak {drain['worker_peak_rss_mb']:.0f} MB; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        startup_status = status_startup_s()
        entries, at = largest_folder(run_dir)
        files = inodes(run_dir)
        print(f"  {n:>9,} largest folder {entries} entries ({at}); {files / n:.2f} files and folders per task",
              flush=True)
        return {"n": n, "workers": workers, "partial": True, "drain_window_s": drain["window_s"],
                "input": f"tasks_file (JSON Lines), {CONFORMERS} conformers per owner",
                "stage_s": stage.seconds, "drain_s": None, "ingest_s": None, "report_s": None, "total_s": None,
                "drain_ms_per_task": drain["ms_per_task"], "drain_net_ms_per_task": drain["ms_per_task"],
                "tasks_in_window": drain["tasks_in_window"], "total_ms_per_task": None, "worker_startup_s": 0.0,
                "floor_ms": floor, "floor_ms_before_after": [floor_before, floor_after],
                "drain_ms_per_task_per_worker": per_worker_ms, "drain_net_ms_per_task_per_worker": per_worker_ms,
                "floor_ratio": per_worker_ms / floor, "floor_ratio_net": per_worker_ms / floor,
                "status_s": {"pending": status_pending[0], "mid_drain": drain["status_mid"][0]},
                "status_startup_s": startup_status,
                "peak_rss_mb": {"stage": stage.peak_rss_mb, "worker": drain["worker_peak_rss_mb"],
                                "status": max(status_pending[1], drain["status_mid"][1])},
                "inodes_per_task": files / n, "completed": {"ledgers": drain["completed_total"]},
                "all_completed": None, "largest_folder": {"entries": entries, "path": at}}
    finally:
        print(f"  {n:>9,} removing the run folder ({folder}) in the background", flush=True)
        REMOVALS.append(subprocess.Popen(["rm", "-rf", str(folder)]))


REMOVALS: list[subprocess.Popen] = []  # millions of inodes take minutes to remove: bench.py waits at its end


def wait_for_removals() -> None:
    for proc in REMOVALS:
        proc.wait()
    REMOVALS.clear()


def bench_pipe_rules(n: int, workers: int, where: Path | None, keep: bool = False) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{n}-", dir=where))
    try:
        run_dir, stage, status_pending = stage_and_status(folder, n, workers)
        floor_before = floor_ms(folder)
        drain = run_all(worker_cmds(run_dir, workers))
        floor_after = floor_ms(folder)
        _said(n, "drain", drain[0], f" (max of the workers {max(p.peak_rss_mb for p in drain):.0f} MB), "
              f"{1000 * drain[0].seconds / n:.3f} ms/task, floor {floor_before:.3f}/{floor_after:.3f} ms")
        ingest = run_all([cli("ingest", str(run_dir), "--no-finish")])[0]
        _said(n, "ingest", ingest)
        report = run_all([cli("report", str(run_dir))])[0]
        _said(n, "report", report)
        status_first = status_step(run_dir)
        status_again = status_step(run_dir, repeat=2)
        status_counts = status_step(run_dir, "--owners", "0", repeat=2)
        startup_status = status_startup_s()
        idle = run_all(worker_cmds(run_dir, workers))  # nothing left: start, look, exit
        startup = idle[0].seconds
        completed = {"records": completed_in_records(run_dir), "status": status_again[2]["tasks"].get("COMPLETED", 0)}
        entries, at = largest_folder(run_dir)
        files = inodes(run_dir)
        results = run_dir / "results"
        drain_s = drain[0].seconds
        total = stage.seconds + drain_s + ingest.seconds
        floor = (floor_before + floor_after) / 2
        per_worker_ms = 1000 * drain_s * workers / n
        net_ms = 1000 * max(drain_s - startup, 0.0) * workers / n
        return {"n": n, "workers": workers, "input": f"tasks_file (JSON Lines), {CONFORMERS} conformers per owner",
                "stage_s": stage.seconds, "drain_s": drain_s, "ingest_s": ingest.seconds, "report_s": report.seconds,
                "total_s": total, "drain_ms_per_task": 1000 * drain_s / n, "total_ms_per_task": 1000 * total / n,
                "worker_startup_s": startup, "drain_net_ms_per_task": 1000 * max(drain_s - startup, 0.0) / n,
                # CPU the workers used per task, net of their start-up's: flat across sizes means a growing
                # wall time is spent waiting (the filesystem), not in the code
                "drain_cpu_ms_per_task": 1000 * max(sum(p.cpu_s for p in drain) - sum(p.cpu_s for p in idle), 0.0) / n,
                "drain_user_sys_s": [sum(p.cpu_s for p in drain), sum(p.cpu_s for p in idle)],
                "floor_ms": floor, "floor_ms_before_after": [floor_before, floor_after],
                "drain_ms_per_task_per_worker": per_worker_ms, "drain_net_ms_per_task_per_worker": net_ms,
                "floor_ratio": per_worker_ms / floor, "floor_ratio_net": net_ms / floor,
                "status_s": {"pending": status_pending[0], "first": status_first[0], "again": status_again[0],
                             "owners0": status_counts[0]},
                "status_startup_s": startup_status,
                "peak_rss_mb": {"stage": stage.peak_rss_mb, "worker": max(p.peak_rss_mb for p in drain),
                                "ingest": ingest.peak_rss_mb, "report": report.peak_rss_mb,
                                "status": max(s[1] for s in (status_pending, status_first, status_again))},
                "results_mb": sum(p.stat().st_size for p in results.iterdir() if p.is_file()) / 2**20,
                "inodes_per_task": files / n, "completed": completed,
                "all_completed": completed["records"] == n == completed["status"],
                "largest_folder": {"entries": entries, "path": at}}
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def bench_syscalls(n: int, workers: int, where: Path | None) -> dict:
    """The same steps under `strace -f -c` (untimed: strace slows every call). The drain is counted
    net of the workers' own start-up and exit: the same workers traced again on the drained run."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-strace-{n}-", dir=where))
    base = help_calls()
    try:
        config = write_campaign(folder, n, workers)
        run_dir = folder / "runs" / "bench" / "main"
        steps = {"stage": [cli("stage", str(config))], "drain": worker_cmds(run_dir, workers),
                 "ingest": [cli("ingest", str(run_dir), "--no-finish")]}
        calls = {step: traced(cmds, folder, step) for step, cmds in steps.items()}
        idle = traced(worker_cmds(run_dir, workers), folder, "idle")  # start, find nothing, exit
        per_task = {}
        for step, counted in calls.items():
            start = idle if step == "drain" else {k: v * len(steps[step]) for k, v in base.items()}
            net = {k: v - start.get(k, 0) for k, v in counted.items()}
            per_task[step] = {k: round(v / n, 2) for k, v in sorted(net.items()) if v > 0}
        per_task["total"] = {step: round(sum(v.values()), 1) for step, v in per_task.items()}
        return per_task
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def timed(label: str, fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    print(f"{label}: {time.perf_counter() - start:.1f} s", flush=True)
    return value
