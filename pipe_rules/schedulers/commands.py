"""The one submit command per array, per scheduler, and how each names the array and its elements.

Every element asks for ONE shard's resources (cores, memory, walltime): an array spreads over
nodes and starts as slots free up, where a grouped allocation would ask one node for the sum.

| scheduler | array directive | index | throttle | one element's resources |
|---|---|---|---|---|
| SGE | `qsub -t 1-K` | `$SGE_TASK_ID` | `-tc N` | `-pe smp C`, `-l h_vmem=M/C` (per slot), `-l h_rt` |
| PBS Pro | `qsub -J 1-K` (K = 1: plain job) | `$PBS_ARRAY_INDEX` | `-W max_run_subjobs=N` | `-l select=1:ncpus=C:mem=Mmb`, `-l walltime` |
| HTCondor | `queue K` | `$(Process)` + 1 | `max_materialize = N` | `request_cpus`, `request_memory`, walltime by `periodic_remove` |
| LSF | `bsub -J "name[1-K]%N"` | `$LSB_JOBINDEX` | `%N` | `-n C -R "span[hosts=1] rusage[mem=M]" -M M`, `-W` |
| SLURM | `sbatch --array=1-K%N` | `$SLURM_ARRAY_TASK_ID` | `%N` | `-c C --mem=M -t MIN` |
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SCHEDULERS = ("sge", "pbs", "htcondor", "lsf", "slurm")
CANCEL = {"sge": "qdel", "pbs": "qdel", "htcondor": "condor_rm", "lsf": "bkill", "slurm": "scancel"}
SUBMIT = {"sge": "qsub", "pbs": "qsub", "htcondor": "condor_submit", "lsf": "bsub", "slurm": "sbatch"}


@dataclass
class ArrayRequest:
    """One array submission: K elements, each asking for one shard's resources."""

    scheduler: str
    name: str
    size: int
    cores: int
    mem_mb: int | None
    runtime_min: int | None
    queue: str | None = None
    account: str | None = None
    throttle: int | None = None
    export_env: bool = True
    pe: str = "smp"
    mem_resource: str = "h_vmem"
    extra: list[str] = field(default_factory=list)

    @property
    def is_array(self) -> bool:
        return self.size > 1 or self.scheduler != "pbs"


def number(value: object) -> int | None:
    """A positive whole resource value (rounded up), or None."""
    try:
        result = math.ceil(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if result > 0 else None


def hms(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def job_name(label: str) -> str:
    return "pr_" + re.sub(r"[^A-Za-z0-9_-]", "_", label)[:60]


def _limit(request: ArrayRequest) -> str:
    return f"%{request.throttle}" if request.throttle else ""


def submit_argv(request: ArrayRequest, script: Path, log_stem: Path, workdir: Path) -> list[str]:
    """The argv (no shell) of the ONE submission of `request`; `script` is array.sh (HTCondor: the
    submit description). Logs: `<log_stem>.<index>.out/.err` in each scheduler's own pattern."""
    r, size, stem = request, request.size, str(log_stem)
    if r.scheduler == "htcondor":
        return ["condor_submit", "-terse", str(script)]
    if r.scheduler == "sge":
        argv = ["qsub", "-terse", "-cwd"] + (["-V"] if r.export_env else []) + ["-S", "/bin/bash", "-N", r.name,
                                                                               "-t", f"1-{size}"]
        argv += ["-tc", str(r.throttle)] if r.throttle else []
        argv += ["-pe", r.pe, str(r.cores)]
        if r.mem_mb:  # SGE counts memory per slot: the element gets cores x this
            argv += ["-l", f"{r.mem_resource}={math.ceil(r.mem_mb / r.cores)}M"]
        argv += ["-l", f"h_rt={hms(r.runtime_min)}"] if r.runtime_min else []
        argv += ["-A", r.account] if r.account else []
        argv += ["-q", r.queue] if r.queue else []
        return argv + ["-o", f"{stem}.$TASK_ID.out", "-e", f"{stem}.$TASK_ID.err", *r.extra, str(script)]
    if r.scheduler == "pbs":
        argv = ["qsub"] + (["-V"] if r.export_env else []) + ["-S", "/bin/bash", "-N", r.name]
        index = ".^array_index^" if r.is_array else ".1"
        if r.is_array:
            argv += ["-J", f"1-{size}"] + (["-W", f"max_run_subjobs={r.throttle}"] if r.throttle else [])
        memory = f":mem={r.mem_mb}mb" if r.mem_mb else ""
        argv += ["-l", f"select=1:ncpus={r.cores}{memory}"]
        argv += ["-l", f"walltime={hms(r.runtime_min)}"] if r.runtime_min else []
        argv += ["-A", r.account] if r.account else []
        argv += ["-q", r.queue] if r.queue else []
        return argv + ["-o", f"{stem}{index}.out", "-e", f"{stem}{index}.err", *r.extra, str(script)]
    if r.scheduler == "lsf":
        argv = ["bsub", "-J", f"{r.name}[1-{size}]{_limit(r)}", "-n", str(r.cores)]
        usage = f"span[hosts=1] rusage[mem={r.mem_mb}]" if r.mem_mb else "span[hosts=1]"
        argv += ["-R", usage] + (["-M", str(r.mem_mb)] if r.mem_mb else [])
        argv += ["-W", f"{r.runtime_min // 60}:{r.runtime_min % 60:02d}"] if r.runtime_min else []
        argv += ["-P", r.account] if r.account else []
        argv += ["-q", r.queue] if r.queue else []
        argv += ["-env", "all"] if r.export_env else ["-env", "none"]
        return argv + ["-cwd", str(workdir), "-o", f"{stem}.%I.out", "-e", f"{stem}.%I.err", *r.extra, str(script)]
    argv = ["sbatch", "--parsable", "-J", r.name, f"--array=1-{size}{_limit(r)}", "-c", str(r.cores)]
    argv += [f"--mem={r.mem_mb}"] if r.mem_mb else []
    argv += ["-t", str(r.runtime_min)] if r.runtime_min else []
    argv += ["-p", r.queue] if r.queue else []
    argv += ["-A", r.account] if r.account else []
    argv += ["--export=ALL" if r.export_env else "--export=NONE", "-D", str(workdir)]
    return argv + ["-o", f"{stem}.%a.out", "-e", f"{stem}.%a.err", *r.extra, str(script)]


def condor_description(request: ArrayRequest, wrapper: Path, log_stem: Path, workdir: Path, events: Path,
                       extra: list[str]) -> str:
    """HTCondor submit description: ONE cluster of K procs (`queue K`), proc p runs element p + 1."""
    for path in (wrapper, log_stem, workdir, events):
        if "\n" in str(path):  # one line per command: a newline would start another command
            raise ValueError(f"{path!r} holds a line break; use a working directory and log folder without one")
    r = request
    lines = [f"# HTCondor array {r.name}: {r.size} element(s), written by pipe_rules.schedulers",
             "universe = vanilla", f"executable = {wrapper}", "arguments = $(Process)", f"initialdir = {workdir}",
             f"getenv = {'true' if r.export_env else 'false'}", "should_transfer_files = NO",
             f"request_cpus = {r.cores}"]
    lines += [f"request_memory = {r.mem_mb}M"] if r.mem_mb else []
    if r.runtime_min:
        lines.append(f"periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > {r.runtime_min * 60})")
    lines += [f"max_materialize = {r.throttle}"] if r.throttle else []
    lines += [f"batch_name = {r.name}", f"output = {log_stem}.$(Process).out", f"error = {log_stem}.$(Process).err",
              f"log = {events}", 'environment = "PIPE_RULES_CLUSTER_ID=$(ClusterId)"', *extra, f"queue {r.size}", ""]
    return "\n".join(lines)


_NUMBER = {
    "sge": re.compile(r"^\s*(\d+)"),  # 7.1-3:1
    "pbs": re.compile(r"^\s*(\d+)"),  # 123[].server
    "htcondor": re.compile(r"^\s*(\d+)\.\d+\s+-"),  # 42.0 - 42.3
    "lsf": re.compile(r"Job <(\d+)>"),  # Job <123> is submitted to queue <normal>.
    "slurm": re.compile(r"^\s*(\d+)"),  # 123 or 123;cluster
}


def parse_submitted(scheduler: str, stdout: str) -> tuple[str, str]:
    """(array number, array id as the cancel command takes it) from the submit command's output."""
    text = stdout.strip()
    match = _NUMBER[scheduler].search(text)
    if not match:
        raise ValueError(f"{SUBMIT[scheduler]} printed no job id: {stdout!r}")
    number_ = match.group(1)
    return number_, (text.splitlines()[-1].strip() if scheduler == "pbs" else number_)


def element_id(scheduler: str, array_id: str, index: int, is_array: bool = True) -> str:
    """How the scheduler names element `index` (1-based) of array `array_id`."""
    if scheduler == "sge":
        return f"{array_id}.{index}"
    if scheduler == "pbs":
        return array_id.replace("[]", f"[{index}]") if is_array else array_id
    if scheduler == "htcondor":
        return f"{array_id}.{index - 1}"
    if scheduler == "lsf":
        return f"{array_id}[{index}]"
    return f"{array_id}_{index}"


def cancel_argv(scheduler: str, array_ids: list[str]) -> list[str]:
    """ONE call that cancels whole arrays (every element still queued or running)."""
    return [CANCEL[scheduler], *array_ids]


def quoted(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
