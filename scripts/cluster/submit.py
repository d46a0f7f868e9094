#!/usr/bin/env python3
"""Submit one Snakemake job to SGE, PBS Pro or HTCondor and print only its job id.

Snakemake's cluster-generic executor calls `submit.py SCHEDULER [options] JOBSCRIPT`. With the
profiles' `groups`, one job is a whole run's shard group: ONE allocation per run. Why a script
rather than a qsub template in the profile: the units differ per scheduler (SGE wants memory per
slot, PBS per chunk, HTCondor a submit description), and every job must (1) run the campaign's
set-up lines before the Python interpreter starts, (2) get its own scratch folder as TMPDIR and
(3) leave an exit-code file, because finished jobs vanish from qstat. One generated bash wrapper
does all three; it and its record go to the state folder (see cluster_common.py).

Set-up lines come from a file (`--setup-file`, or $PIPE_RULES_JOB_SETUP): one command per line,
`#` comments. Words are passed literally (quoted), except `$NAME`/`${NAME}` and a leading `~`;
so `$(rm -rf ~)` in a value stays an inert string. Pipes, `;`, `&&` and redirections are refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_common import SCHEDULERS, fail, job_number, save_record, state_dir

SCRIPT = "submit.py"
SETUP_ENV = "PIPE_RULES_JOB_SETUP"
_COMMAND = re.compile(r"[A-Za-z_./~][A-Za-z0-9_.+/~-]*")
_OPERATORS = {";", "&", "&&", "||", "|", "|&", ">", ">>", "<", "<<", "2>", "2>&1", "&>"}
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
# How each scheduler names the running job; the scratch folder and log lines use it.
_JOB_ID_LINES = {
    "sge": ['job_id=${JOB_ID:-$$}',
            'case ${SGE_TASK_ID:-undefined} in undefined) ;; *) job_id=$job_id.$SGE_TASK_ID ;; esac'],
    "pbs": ['job_id=${PBS_JOBID:-$$}',
            'job_id=${job_id%%\\[*}  # 123[4].server -> 123',
            'job_id=${job_id%%.*}${PBS_ARRAY_INDEX:+.$PBS_ARRAY_INDEX}'],
    "htcondor": ['job_id=${PIPE_RULES_CONDOR_JOB_ID:-$$}'],
}


@dataclass
class JobSpec:
    """What the scheduler is asked for, read from the `# properties = {...}` line of the jobscript."""

    name: str
    threads: int
    mem_mb: int | None
    runtime_min: int | None
    queue: str | None
    account: str | None


def read_jobscript(path: Path) -> tuple[dict, str]:
    """(properties, body without the #! line) of Snakemake's jobscript."""
    try:
        text = path.read_text()
    except OSError as error:
        fail(SCRIPT, f"cannot read jobscript {path}: {error.strerror}; Snakemake passes it as last argument")
    match = re.search(r"^# properties = (.*)$", text, re.MULTILINE)
    if not match:
        fail(SCRIPT, f"{path} has no '# properties = {{...}}' line: pass the jobscript Snakemake wrote "
                     "(a custom --jobscript must keep that line)")
    body = text.split("\n", 1)[1] if text.startswith("#!") else text
    try:
        return json.loads(match.group(1)), body.rstrip("\n")
    except ValueError as error:
        fail(SCRIPT, f"{path}: the '# properties = ' line is not JSON ({error}); pass Snakemake's jobscript")


def _number(value: object) -> int | None:
    try:
        return math.ceil(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def job_spec(properties: dict, queue: str | None, account: str | None) -> JobSpec:
    """Group jobs carry summed threads/memory and the longest runtime; rules map partition/account."""
    resources = properties.get("resources") or {}
    if properties.get("type") == "group":
        label = str(properties.get("groupid", "group"))
    else:
        label = "_".join([str(properties.get("rule", "job"))] + [str(v) for v in (properties.get("wildcards") or {}).values()])
    name = "pr_" + re.sub(r"[^A-Za-z0-9_-]", "_", label)[:60]
    return JobSpec(name=name, threads=max(1, _number(properties.get("threads")) or 1),
                   mem_mb=_number(resources.get("mem_mb")), runtime_min=_number(resources.get("runtime")),
                   queue=queue or resources.get("slurm_partition") or None,
                   account=account or resources.get("slurm_account") or None)


def walltime(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def render_word(word: str) -> str:
    """Quote one word for bash, keeping only `$NAME`, `${NAME}` and a leading `~` live."""
    parts = []
    if word == "~" or word.startswith("~/"):
        parts.append("~")
        word = word[1:]
    position = 0
    for match in _VAR.finditer(word):
        if match.start() > position:
            parts.append(shlex.quote(word[position:match.start()]))
        parts.append('"${%s}"' % (match.group(1) or match.group(2)))
        position = match.end()
    if position < len(word) or not parts:
        parts.append(shlex.quote(word[position:]))
    return "".join(parts)


def setup_commands(path: Path | None) -> list[str]:
    """The set-up file's commands, each rendered inert except for variable references."""
    if path is None:
        return []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        fail(SCRIPT, f"--setup-file {path}: {error.strerror}; create it (one command per line) or drop "
                     f"the flag / unset ${SETUP_ENV}")
    commands = []
    for number, line in enumerate(lines, 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as error:
            fail(SCRIPT, f"{path}:{number}: {error}; close the quote (one command per line)")
        if not words:
            continue
        bad = [w for w in words if w in _OPERATORS]
        if not _COMMAND.fullmatch(words[0]) or bad:
            fail(SCRIPT, f"{path}:{number}: {line.strip()!r} is not one plain command; write one command "
                         "per line (e.g. 'module load gcc/12'), without ;, |, &&, redirections or $(...)")
        commands.append(" ".join(render_word(w) for w in words))
    return commands


def scratch_expression(base: str | None) -> str:
    if not base:  # the scheduler's own per-job folder (Grid Engine sets only TMP), removed even after a kill
        return "${TMPDIR:-${TMP:-/tmp}}"
    if not base.startswith(("/", "$", "~")):
        fail(SCRIPT, f"--scratch-base {base!r}: give an absolute path or one starting with $VAR, e.g. '$SCRATCH'")
    return render_word(base)


def wrapper_text(scheduler: str, spec: JobSpec, body: str, setup: list[str], setup_file: Path | None,
                 scratch: str, exit_file: Path, workdir: Path) -> str:
    """The bash script the scheduler runs: set-up, scratch, Snakemake's jobscript, exit-code file."""
    q = shlex.quote
    setup_block = [f"{c} || {{ echo {q('pipe_rules: set-up command failed: ' + c)} >&2; pipe_rules_exit 1; }}"
                   for c in setup]
    return "\n".join([
        "#!/bin/bash",
        f"# {scheduler} job {spec.name}, written by scripts/cluster/submit.py. Order: set-up commands,",
        "# per-job scratch folder as TMPDIR, Snakemake's jobscript (the Python interpreter starts only",
        "# there, in a subshell), then the exit-code file that scripts/cluster/status.py reads.",
        "pipe_rules_exit() {",
        f"  printf '%s\\n' \"$1\" > {q(str(exit_file))}.$$ && mv -f {q(str(exit_file))}.$$ {q(str(exit_file))}",
        '  exit "$1"',
        "}",
        f"cd {q(str(workdir))} || pipe_rules_exit 1",
        f"# set-up commands from {setup_file or 'nowhere (no --setup-file, no $' + SETUP_ENV + ')'}",
        *setup_block,
        *_JOB_ID_LINES[scheduler],
        f"export TMPDIR={scratch}/pipe_rules.\"$job_id\"",
        'mkdir -p -- "$TMPDIR" || pipe_rules_exit 1',
        "trap 'rm -rf -- \"$TMPDIR\"' EXIT",
        'echo "pipe_rules: job $job_id on $(hostname), scratch $TMPDIR" >&2',
        "(",
        body,
        ")",
        "pipe_rules_exit $?",
        "",
    ])


def condor_description(spec: JobSpec, wrapper: Path, out: Path, err: Path, workdir: Path, export_env: bool,
                       extra: list[str]) -> str:
    """HTCondor submit description (read by condor_submit; not executable). One job: `queue 1`."""
    for path in (wrapper, out, err, workdir, state_dir()):
        if "\n" in str(path):  # one line per command: a newline would start another command
            fail(SCRIPT, f"{path!r} holds a line break; use a working directory and --log-dir without one")
    lines = [
        f"# HTCondor job {spec.name}, written by scripts/cluster/submit.py",
        "universe = vanilla",
        f"executable = {wrapper}",
        f"initialdir = {workdir}",
        f"getenv = {'true' if export_env else 'false'}",
        "should_transfer_files = NO",
        f"request_cpus = {spec.threads}",
    ]
    if spec.mem_mb:
        lines.append(f"request_memory = {spec.mem_mb}M")
    if spec.runtime_min:
        lines.append(f"periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > {spec.runtime_min * 60})")
    lines += [f"batch_name = {spec.name}", f"output = {out}", f"error = {err}",
              f"log = {state_dir() / 'condor_events.log'}",
              # CLUSTER_ID: pipe_rules' results name the scheduler job from it
              'environment = "PIPE_RULES_CONDOR_JOB_ID=$(ClusterId).$(ProcId) CLUSTER_ID=$(ClusterId)"',
              *extra, "queue 1", ""]
    return "\n".join(lines)


def submit_command(scheduler: str, spec: JobSpec, script: Path, out: Path, err: Path, args: argparse.Namespace,
                   extra: list[str]) -> list[str]:
    """The argv to run (no shell): qsub for SGE/PBS, condor_submit for a description file."""
    if scheduler == "htcondor":
        return ["condor_submit", "-terse", str(script)]
    command = ["qsub"] + (["-terse", "-cwd"] if scheduler == "sge" else [])
    command += (["-V"] if args.export_env else []) + ["-S", "/bin/bash", "-N", spec.name]
    if scheduler == "sge":
        command += ["-pe", args.pe, str(spec.threads)]
        if spec.mem_mb:  # SGE counts memory per slot: the job gets threads x h_vmem
            command += ["-l", f"{args.mem_resource}={math.ceil(spec.mem_mb / spec.threads)}M"]
        if spec.runtime_min:
            command += ["-l", f"h_rt={walltime(spec.runtime_min)}"]
        command += ["-A", spec.account] if spec.account else []
    else:
        memory = f":mem={spec.mem_mb}mb" if spec.mem_mb else ""
        command += ["-l", f"select=1:ncpus={spec.threads}{memory}"]
        if spec.runtime_min:
            command += ["-l", f"walltime={walltime(spec.runtime_min)}"]
        command += ["-A", spec.account] if spec.account else []
    command += ["-q", spec.queue] if spec.queue else []
    return command + ["-o", str(out), "-e", str(err)] + extra + [str(script)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=SCRIPT, description=__doc__.split("\n\n")[0])
    parser.add_argument("scheduler", choices=SCHEDULERS)
    parser.add_argument("--setup-file", type=Path, default=os.environ.get(SETUP_ENV) or None,
                        help=f"file of set-up commands run before Python (default: ${SETUP_ENV})")
    parser.add_argument("--scratch-base", help="parent of the per-job TMPDIR (default: ${TMPDIR:-${TMP:-/tmp}} on the node)")
    parser.add_argument("--log-dir", type=Path, default=Path("logs/cluster"), help="scheduler stdout/stderr files")
    parser.add_argument("--queue", help="queue (default: the run's `partition`)")
    parser.add_argument("--account", help="account string (default: the run's `account`)")
    parser.add_argument("--pe", default="smp", help="SGE parallel environment (default: smp)")
    parser.add_argument("--mem-resource", default="h_vmem", help="SGE per-slot memory resource (default: h_vmem)")
    parser.add_argument("--no-export-env", dest="export_env", action="store_false",
                        help="do not pass the submit environment to the job (qsub -V / getenv)")
    parser.add_argument("--extra", default="", help="more scheduler options, e.g. '-P proj' (HTCondor: 'key = value' lines separated by ;)")
    parser.add_argument("--dry-run", action="store_true", help="write the files, print the command, submit nothing")
    parser.add_argument("jobscript", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    properties, body = read_jobscript(args.jobscript)
    spec = job_spec(properties, args.queue, args.account)
    setup = setup_commands(args.setup_file)
    workdir, token = Path.cwd(), time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    state, logs = state_dir(), args.log_dir.resolve()
    for folder in (state / "scripts", state / "exit", logs):
        folder.mkdir(parents=True, exist_ok=True)
    exit_file, wrapper = state / "exit" / token, state / "scripts" / f"{token}.sh"
    out, err = logs / f"{spec.name}.{token}.out", logs / f"{spec.name}.{token}.err"
    wrapper.write_text(wrapper_text(args.scheduler, spec, body, setup, args.setup_file,
                                    scratch_expression(args.scratch_base), exit_file, workdir))
    wrapper.chmod(0o755)
    script, extra = wrapper, shlex.split(args.extra)
    if args.scheduler == "htcondor":
        script = state / "scripts" / f"{token}.sub"
        lines = [item.strip() for item in args.extra.split(";") if item.strip()]
        script.write_text(condor_description(spec, wrapper, out, err, workdir, args.export_env, lines))
        extra = []
    command = submit_command(args.scheduler, spec, script, out, err, args, extra)
    if args.dry_run:
        print(" ".join(shlex.quote(c) for c in command))
        return 0
    submitted = time.time()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        fail(SCRIPT, f"{command[0]} not found on PATH: run Snakemake on a host with the {args.scheduler} "
                     "client commands (for SGE also source $SGE_ROOT/$SGE_CELL/common/settings.sh)", 1)
    if proc.returncode != 0:
        fail(SCRIPT, f"{command[0]} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()} "
                     f"(command: {' '.join(shlex.quote(c) for c in command)})", 1)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    job_id = lines[-1].strip() if lines else ""
    try:
        number = job_number(proc.stdout if args.scheduler == "htcondor" else job_id)
    except ValueError:
        fail(SCRIPT, f"{command[0]} printed no job id: {proc.stdout!r} {proc.stderr!r}", 1)
    job_id = number if args.scheduler != "pbs" else job_id
    save_record({"scheduler": args.scheduler, "number": number, "job_id": job_id, "token": token,
                 "name": spec.name, "submitted": submitted, "exit_file": str(exit_file),
                 "wrapper": str(wrapper), "final": None, "missing_since": None})
    print(job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
