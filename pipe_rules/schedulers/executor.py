"""Snakemake executor plugin `pipe-rules`: each run's shard jobs as ONE array on SGE, PBS Pro,
HTCondor, LSF or SLURM, every element its own Snakemake job.

Snakemake (snakemake-interface-executor-plugins 9.x) hands `run_jobs` every job that became
ready at once (the profile sets `jobs` above any run's shard count): all shard jobs of a run
arrive together after its `stage_run`. They are bucketed by rule, run and resource shape, and
each bucket becomes one submission (`qsub -t 1-K`, `qsub -J 1-K`, `queue K`, `bsub -J name[1-K]`,
`sbatch --array=1-K`). Element i runs the i-th job's own jobscript, so Snakemake keeps per-shard
accounting: each shard succeeds, fails and is retried on its own (a retried shard is a one-element
array), and no element waits for another's outputs (the SLURM plugin's elements all check the
first element's outputs, upstream issue #447). Status: one batched query per round (status.py).
Cancel (Ctrl-C, or Snakemake stopping on an error): one call for every array with an unfinished
element, from this executor's own record, so a Ctrl-C during a status round (when Snakemake passes
no jobs to cancel) still cancels.
"""

# No `from __future__ import annotations` here: Snakemake builds its command-line options from the
# settings' field types, which must be real types, not strings.
import os
import secrets
import shlex
import subprocess
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from pipe_rules.contracts.errors import ConfigError
from pipe_rules.schedulers import commands, status, wrapper


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    scheduler: Optional[str] = field(default=None, metadata={
        "help": f"The batch system: {', '.join(commands.SCHEDULERS)}.", "required": True})
    setup_file: Optional[str] = field(default=None, metadata={
        "help": "Commands run in every element BEFORE Python starts (module load, conda activate), one per "
                f"line; words are quoted, only $VAR and a leading ~ expand. Default: ${wrapper.SETUP_ENV}."})
    scratch_base: Optional[str] = field(default=None, metadata={
        "help": "Parent of each element's TMPDIR (default: the scheduler's per-job folder)."})
    log_dir: str = field(default="logs/cluster", metadata={"help": "Scheduler stdout/stderr files."})
    queue: Optional[str] = field(default=None, metadata={"help": "Queue/partition (default: the run's `partition`)."})
    account: Optional[str] = field(default=None, metadata={"help": "Account (default: the run's `account`)."})
    pe: str = field(default="smp", metadata={"help": "SGE parallel environment for an element's cores."})
    mem_resource: str = field(default="h_vmem", metadata={"help": "SGE per-slot memory resource."})
    no_export_env: bool = field(default=False, metadata={
        "help": "Do not pass the submit environment to the elements (qsub -V, getenv, --export=ALL, -env all)."})
    extra: Optional[str] = field(default=None, metadata={
        "help": "More submit options, e.g. '-P proj' (HTCondor: 'key = value' lines separated by ;)."})
    status_grace: float = field(default=60.0, metadata={
        "help": "Seconds an element may be missing from the scheduler without an exit-code file before it "
                "counts as failed (shared-file-system lag)."})
    array_limit: int = field(default=1000, metadata={
        "help": "Most elements per submission (the scheduler's array size limit, e.g. SLURM MaxArraySize - 1)."})


common_settings = CommonSettings(non_local_exec=True, implies_no_shared_fs=False, job_deploy_sources=False,
                                 pass_default_storage_provider_args=True, pass_default_resources_args=True,
                                 pass_envvar_declarations_to_cmd=True, auto_deploy_default_storage_provider=False)


def _resource(job: JobExecutorInterface, *names: str) -> object:
    for name in names:
        value = job.resources.get(name)
        if value not in (None, ""):
            return value
    return None


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        settings = self.workflow.executor_settings
        if settings.scheduler not in commands.SCHEDULERS:
            raise WorkflowError(f"--pipe-rules-scheduler {settings.scheduler!r}: give one of "
                                f"{', '.join(commands.SCHEDULERS)} (the profile's pipe-rules-scheduler key)")
        self.scheduler: str = settings.scheduler
        self.state = Path(os.environ.get("PIPE_RULES_CLUSTER_STATE") or ".snakemake/pipe_rules_arrays").resolve()
        setup_file = settings.setup_file or os.environ.get(wrapper.SETUP_ENV) or None
        try:
            self.setup_file = Path(setup_file).resolve() if setup_file else None
            self.setup = wrapper.setup_commands(self.setup_file)
            self.scratch = wrapper.scratch_expression(settings.scratch_base)
        except ConfigError as error:
            raise WorkflowError(f"pipe_rules: {error}") from None
        self.unfinished: dict[str, set[int]] = {}  # array id -> elements without a verdict
        self.record_lock = threading.Lock()

    # --- submission ---------------------------------------------------------------------------

    def run_jobs(self, jobs: list[JobExecutorInterface]) -> None:
        buckets: dict[tuple, list[JobExecutorInterface]] = {}
        for job in jobs:
            buckets.setdefault(self._bucket_key(job), []).append(job)
        limit = max(1, int(self.workflow.executor_settings.array_limit))
        for bucket in buckets.values():
            for job in bucket:
                self.run_job_pre(job)
            for start in range(0, len(bucket), limit):
                self._submit(bucket[start:start + limit])

    def run_job(self, job: JobExecutorInterface) -> None:
        self._submit([job])

    def _bucket_key(self, job: JobExecutorInterface) -> tuple:
        run = (getattr(job, "wildcards", None) or {}).get("run") if not job.is_group() else None
        return (job.name, run, job.threads, _resource(job, "mem_mb"), _resource(job, "runtime"),
                _resource(job, "slurm_partition", "partition"), _resource(job, "slurm_account", "account"),
                _resource(job, "array_throttle"))

    def _request(self, jobs: list[JobExecutorInterface]) -> commands.ArrayRequest:
        settings, first = self.workflow.executor_settings, jobs[0]
        run = (getattr(first, "wildcards", None) or {}).get("run") if not first.is_group() else None
        label = f"{first.name}_{run}" if run else first.name
        extra = settings.extra or ""
        return commands.ArrayRequest(
            scheduler=self.scheduler, name=commands.job_name(label), size=len(jobs),
            cores=max(1, commands.number(first.threads) or 1), mem_mb=commands.number(_resource(first, "mem_mb")),
            runtime_min=commands.number(_resource(first, "runtime")),
            queue=settings.queue or _resource(first, "slurm_partition", "partition"),
            account=settings.account or _resource(first, "slurm_account", "account"),
            throttle=commands.number(_resource(first, "array_throttle")), export_env=not settings.no_export_env,
            pe=settings.pe, mem_resource=settings.mem_resource,
            extra=[] if self.scheduler == "htcondor" else shlex.split(extra))

    def _write_files(self, request: commands.ArrayRequest, jobs: list[JobExecutorInterface]) -> tuple[Path, Path, Path]:
        token = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        folder = self.state / "arrays" / token
        logs = Path(self.workflow.executor_settings.log_dir).resolve()
        for path in (folder / "elements", folder / "exit", logs):
            path.mkdir(parents=True, exist_ok=True)
        for index, job in enumerate(jobs, 1):
            self.write_jobscript(job, str(folder / "elements" / f"{index}.sh"))
        script = folder / "array.sh"
        script.write_text(wrapper.wrapper_text(self.scheduler, request.name, request.size, folder,
                                               Path(self.workflow.workdir_init), self.setup, self.setup_file,
                                               self.scratch))
        script.chmod(0o755)
        stem = logs / f"{request.name}.{token}"
        if self.scheduler == "htcondor":
            lines = [item.strip() for item in (self.workflow.executor_settings.extra or "").split(";") if item.strip()]
            description = commands.condor_description(request, script, stem, Path(self.workflow.workdir_init),
                                                      self.state / "condor_events.log", lines)
            script = folder / "submit.sub"
            script.write_text(description)
        return folder, script, stem

    def _submit(self, jobs: list[JobExecutorInterface]) -> None:
        request = self._request(jobs)
        folder, script, stem = self._write_files(request, jobs)
        argv = commands.submit_argv(request, script, stem, Path(self.workflow.workdir_init))
        env = dict(os.environ)
        env.pop("SNAKEMAKE_PROFILE", None)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)
            if proc.returncode != 0:
                raise ValueError(f"{argv[0]} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
            number, array_id = commands.parse_submitted(self.scheduler, proc.stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired) as error:
            for job in jobs:
                self.report_job_error(SubmittedJobInfo(job), msg=f"pipe_rules: submitting the array failed: "
                                                                 f"{error} (command: {commands.quoted(argv)})\n")
            return
        self.logger.info(f"pipe_rules: submitted {self.scheduler} array {array_id} ({request.size} element(s) of "
                         f"{request.cores} core(s)): {commands.quoted(argv)}")
        with self.record_lock:
            self.unfinished[array_id] = set(range(1, len(jobs) + 1))
        for index, job in enumerate(jobs, 1):
            element = status.Element(number, array_id, index, folder / "exit" / str(index))
            ext = commands.element_id(self.scheduler, array_id, index, request.is_array)
            log = f"{stem}.{index - 1 if self.scheduler == 'htcondor' else index}"  # HTCondor: $(Process)
            self.report_job_submission(SubmittedJobInfo(job, external_jobid=ext, aux={"element": element, "log": log}))

    # --- status and cancel --------------------------------------------------------------------

    def _settled(self, element: status.Element) -> None:
        with self.record_lock:
            left = self.unfinished.get(element.array_id, set())
            left.discard(element.index)
            if not left:
                self.unfinished.pop(element.array_id, None)

    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        if not active_jobs:
            # The base class starts its status thread before it makes status_rate_limiter; with nothing
            # submitted yet there is nothing to ask, and touching the limiter could race its creation.
            return
        elements = [info.aux["element"] for info in active_jobs]
        async with self.status_rate_limiter:  # one batched query per round
            try:
                verdicts = status.judge(self.scheduler, elements, time.time(),
                                        float(self.workflow.executor_settings.status_grace))
            except status.MissingCommand as error:
                raise WorkflowError(f"pipe_rules: {error}") from None
            except status.QueryError as error:
                self.logger.warning(f"pipe_rules: {error}; asking again next round")
                verdicts = {}
        for info in active_jobs:
            element = info.aux["element"]
            verdict = verdicts.get(element.key, status.RUNNING)
            if verdict == status.SUCCESS:
                self._settled(element)
                self.report_job_success(info)
            elif verdict == status.FAILED:
                self._settled(element)
                code = status.exit_file_verdict(element) and element.exit_file.read_text().strip()
                why = f"exit code {code}" if code else "no exit code: killed, or lost by the scheduler"
                self.report_job_error(info, msg=f"pipe_rules: array element {info.external_jobid} failed ({why}); "
                                                f"log: {info.aux['log']}.err\n")
            else:
                yield info

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        with self.record_lock:
            ids = sorted(self.unfinished)
            self.unfinished.clear()
        if not ids:
            return
        argv = commands.cancel_argv(self.scheduler, ids)
        self.logger.info(f"pipe_rules: cancelling {len(ids)} array(s) with unfinished elements: {commands.quoted(argv)}")
        try:
            subprocess.run(argv, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            self.logger.error(f"pipe_rules: {commands.quoted(argv)} failed ({error}): cancel those arrays by hand")

    def shutdown(self) -> None:
        """Snakemake stops: after a normal end every element has a verdict and nothing is cancelled;
        after an error (a status command gone, an exception) the arrays left are, in one call."""
        self.cancel_jobs([])
        super().shutdown()

    def get_job_exec_prefix(self, job: JobExecutorInterface) -> str:
        return f"cd {shlex.quote(self.workflow.workdir_init)}"
