"""The benchmark script runs end to end at the CI size and reports what the README quotes.

No timing is asserted (a shared 2-core machine): only that it finishes, every task completes, and
the side-by-side table, the ratios against both baselines and the JSON document are all there.
"""

from __future__ import annotations

import json
import re
import subprocess

from conftest import PYTHON, REPO


def test_benchmark_at_1000_tasks_prints_every_number_and_ratio(tmp_path):
    out_json = tmp_path / "bench.json"
    proc = subprocess.run([PYTHON, str(REPO / "benchmarks" / "bench.py"), "--sizes", "100", "1000",
                           "--scan-sizes", "100", "--snakemake-sizes", "100", "--json", str(out_json)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout

    for n in (100, 1000):  # every task of every size completed, by records.json and by status
        assert re.search(rf"check\s+{n:,}: {n} of {n} tasks COMPLETED in records.json, {n} in status", out), out
    for row in ("stage (s)", "drain (s)", "ingest (s)", "stage+drain+ingest (s)", "drain per task (ms)",
                "`pipe-rules status --json` (s)", "peak RSS worker (MB)", "peak RSS ingest (MB)",
                "drain per task net of start-up (ms)", "largest folder (entries)"):
        assert re.search(rf"^{re.escape(row)}\s+\S+\s+\S+", out, re.MULTILINE), f"row {row!r} missing:\n{out}"
    assert re.search(r"^drain per task \(ms\)(\s+[\d.]+){2}\s+[\d.]+x$", out, re.MULTILINE), out  # 1,000 vs 100 ratio
    assert re.search(r"scan-claim \(ARC's loop\)\s+100 tasks:\s+[\d.]+ s\s+[\d.]+x slower than pipe_rules", out), out
    assert re.search(r"Snakemake, one job per task\s+100 tasks:\s+[\d.]+ s\s+[\d.]+x slower than pipe_rules", out), out
    assert re.search(r"scan-claim \(ARC's loop\)\s+1,000 tasks: not run \(extrapolated", out), out
    assert re.search(r"^\s+(MET |MISS) drain <= 1.0 ms/task at 1,000", out, re.MULTILINE), out

    report = json.loads(out_json.read_text())
    assert {"command", "machine", "pipe_rules", "scan", "snakemake", "ratios", "targets"} <= set(report)
    assert [r["n"] for r in report["pipe_rules"]] == [100, 1000]
    for r in report["pipe_rules"]:
        assert r["all_completed"] and r["completed"] == {"records": r["n"], "status": r["n"]}
        assert {"stage", "worker", "ingest"} <= set(r["peak_rss_mb"]) and r["peak_rss_mb"]["worker"] > 0
        assert r["worker_startup_s"] > 0 and 0 <= r["drain_net_ms_per_task"] <= r["drain_ms_per_task"]
        assert 0 < r["largest_folder"]["entries"] <= 300, r["largest_folder"]  # bucketed: no huge folder
    assert set(report["ratios"]["scan"]) == {"100"} and report["ratios"]["scan"]["100"] > 0
    assert set(report["ratios"]["snakemake"]) == {"100"}
