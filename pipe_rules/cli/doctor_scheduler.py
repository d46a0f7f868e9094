"""doctor's scheduler checks: the client commands on PATH, one read-only probe of the server, and
array support where the scheduler can say (its largest array against the config's shard counts).

Why a separate module: what each batch system offers differs (SGE `qconf -sconf` max_aj_tasks,
SLURM `scontrol show config` MaxArraySize, PBS `qstat -B -f` max_array_size, LSF `bparams -a`
MAX_JOB_ARRAY_SIZE; HTCondor's `queue K` needs no server setting).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"
PROBE_TIMEOUT_S = 15.0
# what each scheduler's profile calls: submit, status, cancel (+ sinfo / bqueues for the queues)
SCHEDULER_COMMANDS = {
    "slurm": ("sbatch", "squeue", "scancel", "sinfo"),
    "sge": ("qsub", "qstat", "qdel"),
    "pbs": ("qsub", "qstat", "qdel"),
    "htcondor": ("condor_submit", "condor_q", "condor_rm"),
    "lsf": ("bsub", "bjobs", "bkill", "bqueues"),
}
# one cheap read-only query that needs the scheduler's server to answer
PROBES = {"slurm": ["sinfo", "-h", "-o", "%P %a"], "sge": ["qstat"], "pbs": ["qstat", "-B"],
          "htcondor": ["condor_q", "-totals"], "lsf": ["bqueues"]}
CLIENT_HINT = {
    "slurm": "load the SLURM client tools (e.g. `module load slurm`) or run this on the cluster's login node",
    "sge": "source $SGE_ROOT/<cell>/common/settings.sh (sets PATH, SGE_ROOT, SGE_CELL) on a submit host",
    "pbs": "load the PBS client tools (e.g. `module load pbs`, /opt/pbs/bin on PATH) on a submit host",
    "htcondor": "put HTCondor's bin folder on PATH (e.g. `. /etc/profile.d/condor.sh`) on a submit host",
    "lsf": "source the LSF profile (e.g. `. $LSF_ENVDIR/profile.lsf`) on a submit host",
}
# where the largest array is written: (command, regex of the value, 0 means unlimited)
ARRAY_LIMITS = {
    "slurm": (["scontrol", "show", "config"], r"^MaxArraySize\s*=\s*(\d+)", False),
    "sge": (["qconf", "-sconf"], r"^max_aj_tasks\s+(\d+)", True),
    "pbs": (["qstat", "-B", "-f"], r"^\s*max_array_size\s*=\s*(\d+)", False),
    "lsf": (["bparams", "-a"], r"^\s*MAX_JOB_ARRAY_SIZE\s*=\s*(\d+)", False),
}
DEFAULT_LIMITS = {"slurm": 1001, "pbs": 10000, "lsf": 1000, "sge": 75000}


@dataclass(frozen=True)
class Check:
    status: str  # OK, WARN or FAIL
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


def _run(argv: list[str]) -> subprocess.CompletedProcess | str:
    """The finished command, or why it could not run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return f"{argv[0]} not on PATH"
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv)}` did not answer within {PROBE_TIMEOUT_S:g} s"


def check_arrays(scheduler: str, max_shards: int) -> Check:
    """The scheduler's largest array (elements) against the most shards a run of the config asks for.
    pipe_rules splits a bigger run into several submissions (pipe-rules-array-limit): a WARN."""
    if scheduler == "htcondor":
        return Check(OK, "arrays", "HTCondor: one submit description with `queue K` (no server limit to check)")
    argv, pattern, zero_unlimited = ARRAY_LIMITS[scheduler]
    proc = _run(argv)
    found = re.search(pattern, proc.stdout, re.MULTILINE) if not isinstance(proc, str) else None
    if found is None:
        said = proc if isinstance(proc, str) else f"`{' '.join(argv)}` does not say"
        return Check(WARN, "arrays", f"{said}; assuming {scheduler}'s default largest array, "
                     f"{DEFAULT_LIMITS[scheduler]} elements", "ask the admins for the array size limit")
    limit = int(found.group(1))
    # SLURM: the largest index is MaxArraySize - 1 (indices start at 0; pipe_rules' start at 1)
    largest = None if limit == 0 and zero_unlimited else limit - 1 if scheduler == "slurm" else limit
    where = f"`{' '.join(argv)}`: {' '.join(found.group(0).split())}"
    if largest is not None and max_shards > largest:
        return Check(WARN, "arrays", f"{where}, but a run asks for {max_shards} shards: it is split into "
                     f"{-(-max_shards // largest)} submissions", f"set shards <= {largest} or --pipe-rules-array-limit")
    return Check(OK, "arrays", f"{where} (largest run of the config: {max_shards} shard(s))")


def check_scheduler(scheduler: str | None, partitions: list[str], max_shards: int = 0) -> list[Check]:
    if scheduler == "local":
        return [Check(OK, "scheduler", "local profile: no scheduler commands needed")]
    if scheduler not in SCHEDULER_COMMANDS:
        return [Check(WARN, "scheduler", "cannot tell which scheduler this profile submits to; its commands "
                      "were not checked", "use one of the project's profiles, or check the commands by hand")]
    commands = SCHEDULER_COMMANDS[scheduler]
    absent = [c for c in commands if shutil.which(c) is None]
    if absent:
        return [Check(FAIL, "scheduler commands", f"{', '.join(absent)} not on PATH (the {scheduler} profile "
                      f"needs {', '.join(commands)})", CLIENT_HINT[scheduler])]
    checks = [Check(OK, "scheduler commands", ", ".join(f"{c} ({shutil.which(c)})" for c in commands))]
    probe = PROBES[scheduler]
    proc = _run(probe)
    if isinstance(proc, str):
        return checks + [Check(FAIL, "scheduler", proc, f"is the {scheduler} server reachable from this host?")]
    if proc.returncode != 0:
        said = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        return checks + [Check(FAIL, "scheduler", f"`{' '.join(probe)}` exited {proc.returncode}: {said}",
                               f"is the {scheduler} server up and this host allowed to submit? {CLIENT_HINT[scheduler]}")]
    checks.append(Check(OK, "scheduler", f"`{' '.join(probe)}` answered"))
    checks.append(check_arrays(scheduler, max_shards))
    if scheduler == "slurm" and partitions:
        known = {line.split()[0].rstrip("*") for line in proc.stdout.splitlines() if line.split()}
        unknown = [p for p in partitions if p not in known]
        if unknown:
            checks.append(Check(FAIL, "partition", f"{', '.join(unknown)} not listed by sinfo (partitions: "
                                f"{', '.join(sorted(known)) or 'none'})", "set 'partition' in the campaign config "
                                "to one of these, or leave it empty for the default partition"))
        else:
            checks.append(Check(OK, "partition", f"{', '.join(partitions)} listed by sinfo"))
    return checks
