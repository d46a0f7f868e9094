"""The run settings of a campaign config as a pydantic model: the one source of their types, bounds
and defaults (config.schema.json and the README's config reference are generated from it).

`RunSettings` is what `defaults:` and each run may set; a `RunConfig` is one run with its settings
resolved (the run's own, else `defaults`, else the model's default), as `config.parse_campaign`
returns it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from pipe_rules.contracts.models import FileModel
from pipe_rules.contracts.spec import HOMOGENEITY_FIELDS, Family

NAME_PATTERN = "^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,63}$"
SCHEDULER_NAME_PATTERN = "^[A-Za-z0-9_.,+-]*$"
UNIQUE = {"uniqueItems": True}


def _unique(items: tuple) -> tuple:
    repeated = sorted({repr(item) for item in items if items.count(item) > 1})
    if repeated:
        raise ValueError(f"{list(items)!r} has repeated items ({', '.join(repeated)})")
    return items


Unique = AfterValidator(_unique)
Name = Annotated[str, Field(strict=True, pattern=NAME_PATTERN)]


class RunSettings(FileModel):
    """Settings every run inherits unless it overrides them."""

    model_config = ConfigDict(frozen=True)

    engine: StrictStr = Field("tblite", description=(
        'Engine that runs the tasks: tblite (GFN-xTB; every family), pyscf (HF/DFT: conf_opt, conf_sp, species_sp, '
        'species_freq), external (an installed program such as Gaussian or ORCA, run through options.command and '
        'options.input_template, its log read by cclib) or noop (computes nothing: benchmarks, fault injection).'))
    level: StrictStr = Field("GFN2-xTB", description=(
        "Level of theory: GFN2-xTB, GFN1-xTB or IPEA1-xTB for tblite; 'method/basis' for pyscf (hf/sto-3g, "
        'b3lyp/def2-svp); for external, the text put in place of {level} in the input template.'))
    cores: StrictInt = Field(1, ge=1, description=(
        "Cores per worker (per shard job); the engine's OpenMP and BLAS threads are limited to it while a task runs."))
    memory_mb: StrictInt = Field(2000, ge=64, description='Memory per worker in MB.')
    walltime_min: StrictInt = Field(60, ge=1, description='Walltime per shard job in minutes.')
    shards: StrictInt = Field(2, ge=1, le=100000, description=(
        'Number of shard jobs (workers) for the run: one array element each.'))
    max_attempts: StrictInt = Field(3, ge=1, le=100, description=(
        'Attempts per task before FAILED_TERMINAL (transient failures only; engine errors are never retried).'))
    lease_s: StrictFloat = Field(300.0, ge=1, description='A claim expires this long after the last heartbeat.')
    heartbeat_s: StrictFloat = Field(30.0, gt=0, description=(
        'How often a worker renews the lease of its running task; must be well below lease_s.'))
    clock_skew_s: StrictFloat = Field(30.0, ge=0, description=(
        'Extra grace before a lease counts as expired, for clock differences between nodes.'))
    linger_s: StrictFloat = Field(None, ge=0, description=(
        "How long an idle worker keeps watching other workers' tasks, to re-run them if their worker dies. Default: "
        'twice lease_s.'))
    n_conformers: StrictInt = Field(4, ge=1, le=1000, description=(
        'Conformers embedded per species (conf_opt, conf_sp from SMILES).'))
    seed: StrictInt = Field(42, description='Random seed for conformer embedding.')
    options: dict[str, Any] = Field(default_factory=dict, description=(
        'Engine options for every task of the run (tblite, pyscf and external fail a task whose options they do not '
        'know). tblite: fmax (eV/A), max_steps, max_iterations, imaginary_threshold_cm1. pyscf: max_cycle, conv_tol, '
        'max_steps, imaginary_threshold_cm1. external: command (argv list), input_template, output, stdout, '
        'input_file, program, timeout_s, imaginary_threshold_cm1 (pipe_rules/engines/external.py). noop: sleep_s, '
        'alloc_mb (memory held while the task runs), fail. A tasks_file run takes each task\'s options from its spec '
        '(defaults.options do not reach it; its own options are refused).'))
    partition: StrictStr = Field("", pattern=SCHEDULER_NAME_PATTERN, description=(
        'Scheduler partition/queue for the shard jobs (SLURM partition, SGE/PBS/LSF queue; not used by HTCondor).'))
    account: StrictStr = Field("", pattern=SCHEDULER_NAME_PATTERN, description=(
        'Scheduler account to charge (SLURM -A, PBS -A, SGE -A, LSF -P; not used by HTCondor).'))
    max_running_shards: StrictInt = Field(0, ge=0, description=(
        "At most this many shard jobs (array elements) of the run running at once; 0: no limit. The scheduler's own "
        'throttle: SLURM --array=1-K%N, SGE -tc N, PBS Pro -W max_run_subjobs=N, HTCondor max_materialize = N, LSF '
        'name[1-K]%N (the local profile ignores it).'))
    scan_resolution_deg: StrictFloat = Field(10.0, gt=0, le=180, description=(
        "Rotor scan step in degrees (rotor_scan_1d); must divide 360. Written into each task's payload at staging, "
        'never read on the worker.'))
    ts_methods: Annotated[tuple[Literal["idpp", "linear"], ...], Unique] = Field(
        ("idpp",), min_length=1, json_schema_extra=UNIQUE, description=(
            'TS-guess interpolation methods (ts_guess_batch_method): one task per reaction and method.'))
    n_images: StrictInt = Field(9, ge=1, le=200, description=(
        'Interpolated images between reactant and product per TS-guess task (ts_guess_batch_method).'))


RUN_SETTINGS = tuple(RunSettings.model_fields)


class RunConfig(RunSettings):
    """A run: one family, engine, level and resource shape; any run setting may be set here too."""

    model_config = ConfigDict(frozen=True)

    name: Name = Field(description='Run name, unique in the campaign.')
    family: Family = Field(description='Task family of every task in the run.')
    from_run: StrictStr = Field(None, description=(
        'Take inputs from the results of this earlier run. From conf_opt/conf_sp: the lowest conformer per species '
        '(species_sp, species_freq, rotor_scan_1d) or every optimised conformer (conf_sp). From ts_opt: each TS '
        "species' chosen TS (irc, species_freq, species_sp). Torsions and IRC directions still come from the species "
        'entry.'))
    species: tuple[StrictStr, ...] = Field(None, description=(
        'Only these species labels (default: all). Does not filter reactions.'))
    tasks_file: StrictStr = Field(None, min_length=1, description=(
        'JSON list of ready task specs (schema: task_spec.schema.json), or JSON Lines (a `.jsonl` file, one spec per '
        'line, read as a stream: for 1,000,000 tasks), relative to this config file, instead of species or from_run; '
        "every spec must match the run's family, engine, level, cores, memory_mb and walltime_min. Written by "
        'pipe_rules.api for host programs such as ARC.'))

    @property
    def homogeneity_key(self) -> dict[str, Any]:
        """What must be the same for every task of a run (ARC's batching key)."""
        return {name: getattr(self, name) for name in HOMOGENEITY_FIELDS}


def run_schema_refs(document: dict) -> dict:
    """In config.schema.json a run entry refers to the run settings instead of repeating them (and
    their defaults, which in a run come from `defaults` first)."""
    document["$defs"]["RunSettings"].pop("additionalProperties", None)  # closed where it is used
    run = document["$defs"]["RunConfig"]
    for name in RUN_SETTINGS:
        run["properties"].pop(name, None)
    run.pop("additionalProperties", None)
    run["allOf"] = [{"$ref": "#/$defs/RunSettings"}]
    run["unevaluatedProperties"] = False
    return document
