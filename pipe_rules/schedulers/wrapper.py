"""The bash script every array element runs, and the campaign's set-up lines inside it.

One script per array submission (`array.sh`); element i runs `elements/<i>.sh`, the Snakemake
jobscript of the i-th shard job, so each element is its own Snakemake job with its own outputs
(no element ever checks another element's outputs). Around it the script (1) runs the campaign's
set-up lines (`module load ...`) before any Python starts, (2) gives the element its own scratch
folder as TMPDIR, removed at exit, (3) writes `exit/<i>` with the element's exit code (143 when
the scheduler sent SIGTERM), because finished elements vanish from the scheduler's listings.

Set-up lines come from a file, one command per line, `#` comments. Words are passed literally
(quoted), except `$NAME`/`${NAME}` and a leading `~`; so `$(rm -rf ~)` stays an inert string.
Pipes, `;`, `&&` and redirections are refused.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pipe_rules.contracts.errors import ConfigError

SETUP_ENV = "PIPE_RULES_JOB_SETUP"
_COMMAND = re.compile(r"[A-Za-z_./~][A-Za-z0-9_.+/~-]*")
_OPERATORS = {";", "&", "&&", "||", "|", "|&", ">", ">>", "<", "<<", "2>", "2>&1", "&>"}
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")

# The element's index (1-based) and its id as the scheduler names it, per scheduler.
INDEX = {
    "sge": "${SGE_TASK_ID}",
    "pbs": "${PBS_ARRAY_INDEX:-1}",  # a one-element run is a plain job: PBS Pro refuses -J 1-1
    "htcondor": "${1:+$(( $1 + 1 ))}",  # arguments = $(Process), 0-based
    "lsf": "${LSB_JOBINDEX}",
    "slurm": "${SLURM_ARRAY_TASK_ID}",
}
ELEMENT_ID = {
    "sge": "${JOB_ID}.${SGE_TASK_ID}",
    "pbs": "${PBS_JOBID%%.*}",  # 123[4].server -> 123[4]
    "htcondor": "${PIPE_RULES_CLUSTER_ID}.$1",
    "lsf": "${LSB_JOBID}[${LSB_JOBINDEX}]",
    "slurm": "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}",
}


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
    field = "--pipe-rules-setup-file"
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"{error.strerror}; create it (one command per line) or drop the setting / unset "
                          f"${SETUP_ENV}", path=path, field=field) from None
    commands = []
    for number, line in enumerate(lines, 1):
        try:  # punctuation_chars: 'a;b' splits into 'a', ';', 'b' (a quoted ';' stays in its word)
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
        except ValueError as error:
            raise ConfigError(f"line {number}: {error}; close the quote (one command per line)",
                              path=path, field=field) from None
        if not words:
            continue
        if not _COMMAND.fullmatch(words[0]) or any(w in _OPERATORS for w in words):
            raise ConfigError(f"line {number}: {line.strip()!r} is not one plain command; write one command per "
                              "line (e.g. 'module load gcc/12'), without ;, |, &&, redirections or $(...)",
                              path=path, field=field)
        commands.append(" ".join(render_word(w) for w in words))
    return commands


def scratch_expression(base: str | None) -> str:
    """The parent of the element's TMPDIR: the scheduler's per-job folder unless a base is given."""
    if not base:  # Grid Engine sets only TMP; every scheduler removes its own folder even after a kill
        return "${TMPDIR:-${TMP:-/tmp}}"
    if not base.startswith(("/", "$", "~")):
        raise ConfigError(f"{base!r}: give an absolute path or one starting with $VAR, e.g. '$SCRATCH'",
                          field="--pipe-rules-scratch-base")
    return render_word(base)


def wrapper_text(scheduler: str, name: str, size: int, folder: Path, workdir: Path, setup: list[str],
                 setup_file: Path | None, scratch: str) -> str:
    """The array script: pick this element's jobscript by index, run it, record its exit code."""
    q = shlex.quote
    failing = [f"{c} || {{ echo {q('pipe_rules: set-up command failed: ' + c)} >&2; pipe_rules_exit 1; }}"
               for c in setup]
    return "\n".join([
        "#!/bin/bash",
        f"# {scheduler} array {name}: {size} element(s), written by pipe_rules.schedulers. Element i runs",
        "# elements/<i>.sh (its own Snakemake job) after the set-up commands, with its own scratch folder",
        "# as TMPDIR, and leaves its exit code in exit/<i> for the status check.",
        f"array_dir={q(str(folder))}",
        f"index={INDEX[scheduler]}",
        "case $index in ''|*[!0-9]*) echo \"pipe_rules: no array index ($index)\" >&2; exit 1 ;; esac",
        "pipe_rules_exit() {",
        '  printf \'%s\\n\' "$1" > "$array_dir/exit/$index.$$" && mv -f "$array_dir/exit/$index.$$" '
        '"$array_dir/exit/$index"',
        '  exit "$1"',
        "}",
        f"cd {q(str(workdir))} || pipe_rules_exit 1",
        f"# set-up commands from {setup_file or 'nowhere (no setup file, no $' + SETUP_ENV + ')'}",
        *failing,
        f"export PIPE_RULES_SCHEDULER_JOB_ID={ELEMENT_ID[scheduler]}",
        f'export TMPDIR={scratch}/pipe_rules."$PIPE_RULES_SCHEDULER_JOB_ID"',
        'mkdir -p -- "$TMPDIR" || pipe_rules_exit 1',
        "trap 'rm -rf -- \"$TMPDIR\"' EXIT",
        'echo "pipe_rules: element $index ($PIPE_RULES_SCHEDULER_JOB_ID) on $(hostname), scratch $TMPDIR" >&2',
        'bash "$array_dir/elements/$index.sh" < /dev/null &',
        "child=$!",
        "# SIGTERM (qdel, scancel, bkill, condor_rm, walltime): pass it on, wait, record 143",
        "trap 'kill -TERM $child 2>/dev/null; wait $child; pipe_rules_exit 143' TERM",
        'wait "$child"',
        "pipe_rules_exit $?",
        "",
    ])
