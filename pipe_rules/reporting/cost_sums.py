"""Sums of what attempts cost (CPU-hours two ways, task time, the largest task peak memory),
per owner and per run, from result.json files or from the workers' ledgers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class CostSummary:
    """Sum over attempts. `cpu_hours` = cores x wall time; `cpu_hours_used` = measured CPU time."""

    attempts: int = 0
    cpu_hours: float = 0.0
    cpu_hours_used: float = 0.0
    task_wall_s: float = 0.0
    peak_rss_mb: float | None = None

    def add(self, cores: float, wall_s: float, cpu_s: float | None, peak_rss_mb: float | None) -> None:
        self.attempts += 1
        self.cpu_hours += cores * wall_s / 3600.0
        self.cpu_hours_used += (cpu_s or 0.0) / 3600.0
        self.task_wall_s += wall_s
        if peak_rss_mb:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, peak_rss_mb)

    def merge(self, other: CostSummary) -> None:
        self.attempts += other.attempts
        self.cpu_hours += other.cpu_hours
        self.cpu_hours_used += other.cpu_hours_used
        self.task_wall_s += other.task_wall_s
        if other.peak_rss_mb:
            self.peak_rss_mb = max(self.peak_rss_mb or 0.0, other.peak_rss_mb)

    def as_dict(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "cpu_hours": self.cpu_hours, "cpu_hours_used": self.cpu_hours_used,
                "task_wall_s": self.task_wall_s, "peak_rss_mb": self.peak_rss_mb}


def add_result(summary: CostSummary, result: dict) -> None:
    """Add one result.json; results written before cost accounting lack `cpu_hours` but have the rest."""
    timings, resources = result.get("timings") or {}, result.get("resources") or {}
    summary.add(resources.get("cores") or 0, timings.get("wall_s") or 0.0, timings.get("cpu_s"),
                resources.get("peak_rss_mb"))
