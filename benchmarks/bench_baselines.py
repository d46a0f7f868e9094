"""Baselines of bench.py, measured on the same machine in the same run:
- scan: ARC's claim loop written here (sorted listing, read every state file, flock CAS), W workers;
- snakemake: one Snakemake job per task (bare shell command), greedy scheduler, W cores;
- xtb: real GFN2-xTB conformer optimisations on W pipe_rules workers, beside the same tasks one
  process each (W at a time) and beside HyperQueue (LocalCluster, one process per task, W cores),
  each with its parallel efficiency: the tasks' summed engine time / (wall time x cores).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from bench_measure import PY, cli, run_all
from bench_pipe import worker_cmds


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


def bench_scan(n: int, workers: int, where: Path | None) -> float:
    folder = Path(tempfile.mkdtemp(prefix=f"scan-{n}-", dir=where))
    try:
        for i in range(n):
            (folder / f"t{i:07d}").mkdir()
            (folder / f"t{i:07d}" / "state.json").write_text('{"status": "PENDING"}')
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_baselines; "
                "bench_baselines._scan_worker(sys.argv[1], sys.argv[2])")
        procs = run_all([[PY, "-c", code, str(folder), f"w{i}"] for i in range(workers)])
        left = sum(json.loads((folder / t / "state.json").read_text())["status"] != "COMPLETED"
                   for t in os.listdir(folder))
        if left:
            raise SystemExit(f"scan baseline left {left} tasks not COMPLETED")
        return procs[0].seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_snakemake(n: int, workers: int, where: Path | None) -> float:
    folder = Path(tempfile.mkdtemp(prefix=f"smk-{n}-", dir=where))
    try:
        (folder / "Snakefile").write_text(
            f'rule all:\n    input: expand("out/{{i}}.txt", i=range({n}))\n\n'
            'rule task:\n    output: "out/{i}.txt"\n    shell: "touch {output}"\n')
        return run_all([[PY, "-m", "snakemake", "--cores", str(workers), "--scheduler", "greedy", "--quiet",
                         "all"]], cwd=folder, stderr=subprocess.DEVNULL)[0].seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- real work -----------------------------------------------------------------------------------

XTB_ARMS = ("pipe_rules", "hyperqueue", "one_process")
XTB_POOL = ("CCCC", "CCCO", "CCCCC", "CCOCC", "CCCN", "CC(C)CO", "CCCCO", "COCCO", "CCC(C)C", "OCCO")

# One task in its own process: load the spec, time the engine alone, write the time beside it.
_ONE_TASK = ("import json, sys, time, tempfile, pathlib\n"
             "from pipe_rules.engines import get_engine\n"
             "s = json.loads(pathlib.Path(sys.argv[1]).read_text())\n"
             "engine = get_engine('tblite')\n"
             "start = time.perf_counter()\n"
             "engine.run(s['family'], s['level'], s['input_payload'], s['options'], pathlib.Path(tempfile.mkdtemp()), 1)\n"
             "pathlib.Path(sys.argv[2]).write_text(str(time.perf_counter() - start))\n")


def _xtb_specs(folder: Path, n: int) -> Path:
    """N distinct conf_opt specs: RDKit conformers of small molecules, each copy's atoms moved by up to
    0.05 Angstrom (seeded), so every task is a real, different optimisation."""
    from pipe_rules.contracts.spec import TaskSpec
    from pipe_rules.inputs.chem import embed_conformers

    geometries = [(smiles, xyz) for smiles in XTB_POOL for xyz in embed_conformers(smiles, 4, seed=7)]
    rng = random.Random(7)
    path = folder / "tasks.jsonl"
    with open(path, "w") as handle:
        for i in range(n):
            smiles, xyz = geometries[i % len(geometries)]
            coords = [[round(c + rng.uniform(-0.05, 0.05), 6) for c in row] for row in xyz["coords"]]
            payload = {"xyz": {**xyz, "coords": coords}, "charge": 0, "multiplicity": 1}
            spec = TaskSpec.create(task_id=f"m{i}_conf_opt_0", family="conf_opt", owner_type="species",
                                   owner_key=f"m{i}", engine="tblite", level="GFN2-xTB", cores=1, memory_mb=2000,
                                   walltime_min=60, input_payload=payload, ingestion_metadata={"conformer_index": 0},
                                   options={"fmax": 0.01})
            handle.write(json.dumps(spec.as_dict()) + "\n")
    return path


def _pool(cmds: list[list[str]], width: int, env: dict) -> float:
    """Run the commands `width` at a time; wall time of all."""
    start, running, queue = time.perf_counter(), [], list(cmds)
    while queue or running:
        while queue and len(running) < width:
            running.append(subprocess.Popen(queue.pop(0), env=env, stdout=subprocess.DEVNULL))
        running[0].wait()
        if running[0].returncode:
            raise SystemExit(f"one-process task failed: exit {running[0].returncode}")
        running = [p for p in running if p.poll() is None]
    return time.perf_counter() - start


def _hyperqueue(cmds: list[list[str]], width: int, env: dict, folder: Path) -> float | None:
    try:
        from hyperqueue import Job
        from hyperqueue.cluster import LocalCluster, WorkerConfig
    except ImportError:
        return None
    with LocalCluster(server_dir=str(folder / "hq"), worker_config=WorkerConfig(cores=width)) as cluster:
        client = cluster.client()
        job = Job()
        for cmd in cmds:
            job.program(cmd, env=env)  # one cpu per task, HyperQueue's default request
        start = time.perf_counter()
        client.wait_for_jobs([client.submit(job)])
        return time.perf_counter() - start


def bench_xtb(n: int, workers: int, where: Path | None, arms: tuple[str, ...] = XTB_ARMS) -> dict:
    """Efficiency = summed engine time / (wall x cores), each arm with one clock: the pipe_rules arm
    sums result.json's wall_s (time.time) over its wall measured with time.time too."""
    folder = Path(tempfile.mkdtemp(prefix="xtb-", dir=where))
    out: dict = {"tasks": n, "workers": workers, "arms": list(arms)}

    def efficiency(busy: float, wall: float | None) -> float | None:
        return None if not wall else busy / (wall * workers)

    try:
        tasks = _xtb_specs(folder, n)
        config = {"campaign": "bench", "run_root": str(folder / "runs"),
                  "defaults": {"engine": "tblite", "shards": workers, "linger_s": 0},
                  "runs": [{"name": "main", "family": "conf_opt", "tasks_file": str(tasks)}]}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        run_all([cli("stage", str(folder / "config.yaml"))])
        run_dir = folder / "runs" / "bench" / "main"
        specs = sorted(run_dir.glob("tasks/*/*/spec.json"))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        outs = folder / "times"
        outs.mkdir()
        if "pipe_rules" in arms:
            start = time.time()
            run_all(worker_cmds(run_dir, workers))
            pooled = time.time() - start
            results = [json.loads(p.read_text()) for p in run_dir.glob("tasks/*/*/attempts/0/result.json")]
            engine_s = sum(r["timings"]["wall_s"] for r in results)
            out.update(pipe_rules_s=pooled, pipe_rules_engine_s=engine_s, tasks=len(results),
                       completed=sum(r["status"] == "COMPLETED" for r in results),
                       pipe_rules_efficiency=efficiency(engine_s, pooled), tasks_per_s=len(results) / pooled)
            print(f"  xtb: pipe_rules {len(results)} tasks in {pooled:.1f} s, engine {engine_s:.1f} s, "
                  f"efficiency {100 * out['pipe_rules_efficiency']:.1f}%", flush=True)
        if "hyperqueue" in arms:
            cmds = [[PY, "-c", _ONE_TASK, str(spec), str(outs / f"{i}.hq")] for i, spec in enumerate(specs)]
            try:
                hq = _hyperqueue(cmds, workers, env, folder)
            except Exception as exc:  # noqa: BLE001 - the comparison must not cost the other numbers
                print(f"  xtb: HyperQueue failed: {type(exc).__name__}: {exc}", flush=True)
                hq = None
            hq_s = sum(float(p.read_text()) for p in outs.glob("*.hq"))
            out.update(hyperqueue_s=hq, hyperqueue_engine_s=hq_s, hyperqueue_efficiency=efficiency(hq_s, hq))
            print(f"  xtb: HyperQueue {hq} s, engine {hq_s:.1f} s", flush=True)
        if "one_process" in arms:
            cmds = [[PY, "-c", _ONE_TASK, str(spec), str(outs / f"{i}.one")] for i, spec in enumerate(specs)]
            one_by_one = _pool(cmds, workers, env)
            one_s = sum(float(p.read_text()) for p in outs.glob("*.one"))
            out.update(one_process_per_task_s=one_by_one, one_process_engine_s=one_s,
                       one_process_efficiency=efficiency(one_s, one_by_one))
            print(f"  xtb: one process per task {one_by_one:.1f} s, engine {one_s:.1f} s", flush=True)
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)
