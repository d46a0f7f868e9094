"""Live views of runs while they work: `pipe-rules run`'s progress bars and `pipe-rules status --watch`.

Both read cheap numbers (never a state file) from the launching process, so the workers are not
slowed: the progress bars count completed attempts in the workers' cost ledgers (reading only what
was appended since the last poll) instead of listing every pending token, and the poll interval
grows to 20 times the last read's duration. On a terminal the display is
rich (bars refreshed in place); otherwise plain lines are printed every `every` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.reporting.report_table import duration
from pipe_rules.reporting.status import ProgressCounter, StatusReader, token_counts
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.runrecord import read_run, run_exists

_FAILED = ("FAILED_ESS", "FAILED_TERMINAL", "CANCELLED")
_RUNNING = ("CLAIMED", "RUNNING", "ORPHANED", "FAILED_RETRYABLE")


@dataclass(frozen=True)
class RunProgress:
    name: str
    total: int
    done: int
    failed: int  # includes cancelled: ended without a result
    running: int
    pending: int

    @property
    def finished(self) -> int:
        return self.done + self.failed


def read_progress(name: str, layout: RunLayout, counter: ProgressCounter | None = None) -> RunProgress | None:
    """None while the run is not staged yet, or while its tokens do not add up (staging). With a
    `counter` (kept between polls) the pending tokens are not listed (status.ProgressCounter)."""
    if not run_exists(layout):
        return None
    try:
        n_tasks = read_run(layout).n_tasks
        counts = counter.counts(n_tasks) if counter is not None else token_counts(layout, n_tasks)
    except (PipeRulesError, OSError):
        return None
    if counts is None:
        return None
    return RunProgress(name, n_tasks, counts["COMPLETED"], sum(counts[s] for s in _FAILED),
                       sum(counts[s] for s in _RUNNING), counts["PENDING"])


class Rate:
    """Tasks finished per second over the last `window_s` seconds, and the time left at that rate."""

    def __init__(self, window_s: float = 60.0):
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, finished: int) -> None:
        self.samples.append((now, finished))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()

    def per_s(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, f0), (t1, f1) = self.samples[0], self.samples[-1]
        return (f1 - f0) / (t1 - t0) if t1 > t0 and f1 > f0 else None

    def eta_s(self, remaining: int) -> float | None:
        rate = self.per_s()
        return remaining / rate if rate and remaining else None


def detail(p: RunProgress, rate: Rate) -> str:
    per_s = rate.per_s()
    remaining = p.total - p.finished
    text = f"{p.done} done, {p.failed} failed, {p.running} running, {p.pending} pending"
    if remaining == 0:
        return text
    return text + (f"; {per_s:.2f} tasks/s, about {duration(rate.eta_s(remaining))} left" if per_s
                   else "; rate -")


def progress_line(p: RunProgress, rate: Rate) -> str:
    return f"progress {p.name}: {p.finished}/{p.total} ended ({detail(p, rate)})"


class CampaignProgress:
    """Polls the runs of a campaign in a background thread and shows their progress.

    `tty`: rich bars on `console` (refreshed in place); else, every `every` seconds, a plain line for
    each run whose counts changed (`every` <= 0: none), and one final line per run when stopped."""

    def __init__(self, runs: list[tuple[str, RunLayout]], console: Console, tty: bool, every: float = 30.0,
                 min_poll_s: float = 1.0):
        self.runs = runs
        self.console = console
        self.tty = tty
        self.every = every
        self.min_poll_s = min_poll_s
        self.rates = {name: Rate() for name, _ in runs}
        self.latest: dict[str, RunProgress] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipe-rules-progress", daemon=True)
        self.bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[detail]}"), console=console, transient=False,
                             auto_refresh=False)
        self._bar_ids: dict[str, int] = {}
        self._counters = {name: ProgressCounter(layout) for name, layout in runs}

    def poll(self) -> float:
        """Read every run once; returns how long that took."""
        started = time.perf_counter()
        now = time.time()
        for name, layout in self.runs:
            p = read_progress(name, layout, self._counters[name])
            if p is None:
                continue
            self.latest[name] = p
            self.rates[name].add(now, p.finished)
            if self.tty:
                fields = {"completed": p.finished, "total": p.total, "detail": detail(p, self.rates[name])}
                if name not in self._bar_ids:
                    self._bar_ids[name] = self.bars.add_task(name, **fields)
                else:
                    self.bars.update(self._bar_ids[name], **fields)
        if self.tty:
            self.bars.refresh()
        return time.perf_counter() - started

    def _loop(self) -> None:
        last_line = time.monotonic()
        printed: dict[str, RunProgress] = {}
        while not self._stop.is_set():
            took = self.poll()
            if not self.tty and self.every > 0 and time.monotonic() - last_line >= self.every:
                last_line = time.monotonic()
                for name, _ in self.runs:  # only runs whose counts moved since their last line
                    if name in self.latest and self.latest[name] != printed.get(name):
                        printed[name] = self.latest[name]
                        print(progress_line(self.latest[name], self.rates[name]), flush=True)
            wait = max(self.min_poll_s, 20 * took)
            if not self.tty and self.every > 0:
                wait = min(max(wait, self.every / 4), self.every)
            self._stop.wait(wait)

    def __enter__(self) -> CampaignProgress:
        if self.tty:
            self.bars.start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        if self.tty:
            self.bars.stop()
        elif self.every > 0:
            for name, _ in self.runs:
                if name in self.latest:
                    print(progress_line(self.latest[name], self.rates[name]), flush=True)


def watch_status(layout: RunLayout, interval: float, render, exact: bool = False, owners: bool = True,
                 console: Console | None = None) -> int:
    """Re-read and redraw the status every `interval` seconds until the run is terminal (or Ctrl-C).

    `render(status)` builds what is shown. Off a terminal, rich prints only the final view."""
    console = console or Console()
    reader = StatusReader(layout)
    try:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                status = reader.read(exact=exact, owners=owners)
                live.update(Group(*render(status)), refresh=True)
                if status.terminal:
                    return 0
                time.sleep(max(0.1, interval))
    except KeyboardInterrupt:
        return 0


__all__ = ["CampaignProgress", "RunProgress", "Rate", "read_progress", "watch_status", "progress_line"]
