"""Python API for host programs (ARC): create a run, launch it without blocking, poll, cancel, collect.

Everything is on disk under one project folder, so a host that restarts re-attaches from there:

    <project>/<run name>/config.yaml    the campaign config of this one run (what snakemake reads)
                         tasks.json     ready TaskSpecs (runs created from specs: `tasks_file`)
                         handle.json    RunHandle: launcher pid, its start time, command, log
                         launcher.log   snakemake's output, appended at every launch
                         launcher.exit  snakemake's exit status, once it has exited (not if killed)
                         launcher.lease touched every LAUNCHER_BEAT_S by the launcher while it lives
                         launch.lock    held while launching, so two hosts start one launcher
                         runs/<campaign>/<run name>/   the run folder (state on disk is the truth)

The launcher is `snakemake --profile ...` as a detached subprocess in its own session (profiles are
read by the snakemake command only; see DESIGN.md), started in the run's own folder so each run has
its own `.snakemake` metadata and lock. Launching a run whose launcher died resumes it: staging is
idempotent and workers skip finished tasks.

Across hosts: the handle records where the launcher runs (host, boot id, pid namespace) and when
its process started. On that host, liveness is asked through psutil (pid + start time: a recycled
pid is not the launcher). From any other host a pid means nothing: there the launcher counts as
alive while its lease file is fresh, so a second host never unlocks or relaunches a live run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml

from pipe_rules.contracts.errors import ConfigError, PipeRulesError
from pipe_rules.contracts.ids import check_safe_id
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.host.launch import snakemake_command
from pipe_rules.host.launcher import LAUNCHER_BEAT_S, RunHandle, RunPoll, on_another_host, pid_alive
from pipe_rules.host.planner import homogeneous_tasks
from pipe_rules.host.run_results import RunResults, run_results
from pipe_rules.inputs.arc_input import ArcSpecies, parse_arc_species
from pipe_rules.inputs.config import load_campaign, parse_campaign
from pipe_rules.inputs.spec_parts import check_species
from pipe_rules.inputs.campaign_checks import check_campaign, check_engine
from pipe_rules.reporting.ingest import ingest
from pipe_rules.reporting.status import run_status
from pipe_rules.store.cancel import cancel_run
from pipe_rules.store.fsio import atomic_write_json, atomic_write_text, read_json
from pipe_rules.store.hostid import host_key, process_started
from pipe_rules.store.layout import RunLayout
from pipe_rules.store.locks import locked
from pipe_rules.store.records_io import load_records, read_summary, results_exist
from pipe_rules.store.runrecord import read_run, run_exists
from pipe_rules.store.states import RunState

# The launcher: a shell that runs snakemake and records its exit status. Its no-op trap keeps it
# alive through SIGINT/SIGTERM until snakemake has stopped (a caught signal is reset in the child,
# so snakemake still gets them), so "launcher alive" means "snakemake alive".
# A background loop renews launcher.lease while the shell lives (it stops with it, even on SIGKILL).
_WRAPPER = ('trap : INT TERM; lease=$1; shift; ( while kill -0 $$ 2>/dev/null; do touch "$lease"; '
            'sleep {beat}; done ) & beat=$!; "$@"; code=$?; kill $beat 2>/dev/null; echo $code > "$0"')


def _interruptible() -> None:
    """In the launcher, before exec: SIGINT as by default. A host that runs in the background (a
    daemon, `nohup`, `cmd &` from a script) ignores SIGINT; the launcher would inherit that, its
    shell cannot trap an ignored signal, and `cancel` would wait out SIGINT's grace for nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class PipeAPI:
    """Runs of one project folder. Any number of these objects (in any process) see the same runs."""

    def __init__(self, project: Path | str):
        self.project = Path(project).resolve()
        self._launched: dict[str, subprocess.Popen] = {}

    # -- create -----------------------------------------------------------------------------------
    def create_run(self, name: str, *, tasks: list[TaskSpec | dict] | None = None,
                   species: list[ArcSpecies | dict] | None = None, family: str | None = None,
                   engine: str | None = None, level: str | None = None, campaign: str = "arc",
                   **settings: Any) -> RunHandle:
        """A run from ready TaskSpecs (one kind: see pipe_rules.api.plan) or from ARC species records
        as ARC writes them (smiles, inchi, adjlist, xyz, conformers, TS guesses...: inputs.arc_species)
        plus family/engine/level. `settings` are run
        settings of the campaign config (shards, lease_s, n_conformers, options...). Creating the same
        run again returns its handle; a different input under the same name is refused."""
        check_safe_id(name, "name")
        home = self.project / name
        for what, value in (("family", family), ("engine", engine), ("level", level)):
            if value is not None:
                settings[what] = value
        run: dict[str, Any] = {"name": name, **settings}
        config: dict[str, Any] = {"campaign": campaign, "run_root": str(home / "runs"), "runs": [run]}
        tasks_text = None
        if (tasks is None) == (species is None):
            raise ConfigError("give either tasks (TaskSpecs) or species (ARC species records)", field="create_run")
        if tasks is not None:
            specs = homogeneous_tasks(tasks)
            key = specs[0].homogeneity_key
            for what, value in key.items():
                if run.get(what, value) != value:
                    raise ConfigError(f"{run[what]!r} but the tasks have {value!r}", field=what)
            run.update(key, tasks_file="tasks.json")
            tasks_text = _json_text([s.as_dict() for s in specs])
        else:
            if family is None:
                raise ConfigError("runs from species need a family (e.g. conf_opt, species_sp)", field="family")
            records = [s.as_species_dict() if isinstance(s, ArcSpecies) else s for s in species]
            config["species"] = [s.as_species_dict() for s in parse_arc_species(records)]
            run.setdefault("engine", "tblite")
            run.setdefault("level", "GFN2-xTB")
        config_path = home / "config.yaml"
        parsed = parse_campaign(config, config_path, base_dir=home)  # one-line errors before any write
        check_engine(parsed, parsed.runs[0])
        for item in parsed.species:
            check_species(item)
        config_text = yaml.safe_dump(config, sort_keys=False)
        handle_path = home / "handle.json"
        if handle_path.exists():
            same = config_path.read_text() == config_text and (
                tasks_text is None or (home / "tasks.json").read_text() == tasks_text)
            if not same:
                raise ConfigError(f"run {name!r} already exists with a different input; use a new name",
                                  path=config_path)
            return self.handle(name)
        home.mkdir(parents=True, exist_ok=True)
        if tasks_text is not None:
            atomic_write_text(home / "tasks.json", tasks_text)
        atomic_write_text(config_path, config_text)
        handle = RunHandle(name=name, home=str(home), config=str(config_path),
                           run_dir=str(parsed.run_dir(name)), log=str(home / "launcher.log"))
        self._save(handle)
        return handle

    # -- find -------------------------------------------------------------------------------------
    def handle(self, name: str | RunHandle) -> RunHandle:
        name = name.name if isinstance(name, RunHandle) else name
        path = self.project / check_safe_id(name, "name") / "handle.json"
        data = read_json(path, f"handle of run {name!r}")
        if not isinstance(data, dict):
            raise ConfigError("is not a run handle (a JSON object)", path=path)
        try:
            return RunHandle(**{**data, "command": tuple(data.get("command", ()))})
        except TypeError as exc:
            raise ConfigError(f"is not a run handle ({exc})", path=path) from None

    def handles(self) -> list[RunHandle]:
        """Every run created in this project, from the handle files on disk."""
        return [self.handle(p.parent.name) for p in sorted(self.project.glob("*/handle.json"))]

    def in_flight(self) -> list[RunHandle]:
        """Runs not done yet (launched or not): poll, launch (resume), cancel or collect them."""
        return [h for h in self.handles() if not self.poll(h).done]

    # -- launch -----------------------------------------------------------------------------------
    def launch(self, name: str | RunHandle, profile: str | Path = "local", extra: list[str] | None = None) -> RunHandle:
        """Start snakemake on the run with `profile` and return at once. A run whose launcher died
        resumes: only missing work runs."""
        home = Path(self.handle(name).home)
        with locked(home / "launch.lock", "soft"):  # two hosts launching at once start one launcher (O_EXCL
            # excludes on every filesystem measured, flock not across sshfs clients)
            return self._launch(self.handle(name), profile, extra)

    def _launch(self, handle: RunHandle, profile: str | Path, extra: list[str] | None) -> RunHandle:
        if self.launcher_alive(handle):
            where = f" on {handle.host.get('host')}" if on_another_host(handle) else ""
            raise PipeRulesError(f"run {handle.name!r} is running (launcher pid {handle.pid}{where}): poll or cancel it",
                                 path=Path(handle.home) / "handle.json")
        layout = RunLayout(Path(handle.run_dir))
        if run_exists(layout) and read_run(layout).state is RunState.CANCELLED:
            raise PipeRulesError(f"run {handle.name!r} was cancelled; create a new run to compute it again",
                                 path=layout.run_json)
        check_campaign(load_campaign(handle.config))  # fail fast with one line, before snakemake starts
        home = Path(handle.home)
        exit_file = home / "launcher.exit"
        exit_file.unlink(missing_ok=True)
        with open(handle.log, "a", encoding="utf-8") as log:
            if any((home / ".snakemake" / "locks").glob("*")):  # left by a launcher that was killed
                log.write("pipe_rules.api: removing the lock of a launcher that is gone\n")
                log.flush()
                subprocess.run(snakemake_command(Path(handle.config), profile, ["--unlock"]), cwd=home,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False)
            command = snakemake_command(Path(handle.config), profile, extra)
            log.write(f"pipe_rules.api: launch {handle.launches + 1} at {time.ctime()}: {' '.join(command)}\n")
            log.flush()
            lease = home / "launcher.lease"
            lease.touch()
            proc = subprocess.Popen(["/bin/sh", "-c", _WRAPPER.format(beat=LAUNCHER_BEAT_S), str(exit_file),
                                     str(lease), *command], cwd=home,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_interruptible,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self._launched[handle.name] = proc
        handle = replace(handle, pid=proc.pid, start_ticks=None, started=process_started(proc.pid),
                         host=host_key(), command=tuple(command),
                         profile=str(profile), launches=handle.launches + 1, launched_at=time.time())
        self._save(handle)
        return handle

    def launcher_alive(self, name: str | RunHandle) -> bool:
        """On the launcher's host: its process (pid and start time) exists and is no zombie. Elsewhere:
        its lease is fresh (or, for a handle without a lease, always: it may be alive)."""
        handle = self.handle(name)
        proc = self._launched.get(handle.name)
        if proc is not None and handle.pid is not None and proc.pid == handle.pid:
            return proc.poll() is None
        return pid_alive(handle)

    # -- poll, cancel, collect ------------------------------------------------------------------------
    def poll(self, name: str | RunHandle) -> RunPoll:
        handle = self.handle(name)
        alive = self.launcher_alive(handle)
        layout = RunLayout(Path(handle.run_dir))
        exit_file = Path(handle.home) / "launcher.exit"
        code = None
        if not alive and exit_file.exists():
            text = exit_file.read_text().strip()
            code = int(text) if text.lstrip("-").isdigit() else None
        if not run_exists(layout) or read_run(layout).state is RunState.CREATED:
            return RunPoll(handle.name, RunState.CREATED.value, {}, alive, code)  # staging not finished
        status = run_status(layout)
        return RunPoll(handle.name, status.run_state, status.counts, alive, code)

    def cancel(self, name: str | RunHandle, grace_s: float = 30.0) -> int:
        """Stop the launcher (SIGINT, then SIGTERM, then SIGKILL, each after `grace_s`), then cancel
        every unfinished task. Results already written stay. Returns the number of tasks cancelled."""
        handle = self.handle(name)
        remote = on_another_host(handle)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if remote or not self.launcher_alive(handle):  # another host's pid: cancelled tasks stop its workers
                break
            try:
                os.killpg(handle.pid, sig)  # the launcher leads its own group: its shard workers too
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace_s
            while self.launcher_alive(handle) and time.monotonic() < deadline:
                time.sleep(0.1)
        layout = RunLayout(Path(handle.run_dir))
        return cancel_run(layout, by="pipe_rules.api") if run_exists(layout) else 0

    def collect(self, name: str | RunHandle) -> RunResults:
        """The run's ingested records as typed results; only once every task ended and snakemake exited."""
        handle = self.handle(name)
        polled = self.poll(handle)
        if not polled.done:
            left = ", ".join(f"{n} {s}" for s, n in polled.counts.items() if n) or "not staged yet"
            hint = "wait for it" if polled.launcher_alive else "launch() resumes it"
            raise PipeRulesError(f"run {handle.name!r} is not finished ({polled.run_state}: {left}); {hint}",
                                 path=handle.run_dir)
        layout = RunLayout(Path(handle.run_dir))
        summary = read_summary(layout) if results_exist(layout) else None
        if (summary is None or summary.get("run_state") != polled.run_state
                or sum(summary.get("task_counts", {}).values()) < sum(polled.counts.values())):
            layout.results_dir.mkdir(exist_ok=True)  # snakemake removes empty output folders of jobs it never ran
            ingest(layout)  # e.g. cancelled, or the launcher died before ingesting
        return run_results(handle.name, load_records(layout), layout)

    def _save(self, handle: RunHandle) -> None:
        atomic_write_json(Path(handle.home) / "handle.json", asdict(handle), pretty=True)


def _json_text(data: Any) -> str:
    import json
    return json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n"
