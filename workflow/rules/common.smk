import sys
from pathlib import Path

from pipe_rules.host.workflow_support import plan_from_snakemake

# Validates the config against pipe_rules' schema before any rule runs. Relative paths in it are
# resolved against the --configfile given on the command line, not the default config.yaml.
PLAN = plan_from_snakemake(
    config, workflow.overwrite_configfiles or workflow.configfiles
)
CAMPAIGN_DIR = PLAN.campaign_dir
PYTHON = sys.executable


def all_records():
    return [f"{CAMPAIGN_DIR}/{run}/results/summary.json" for run in PLAN.run_names()]


def stage_inputs(wildcards):
    return PLAN.upstream_records(wildcards.run)


def fingerprint_of(wildcards):
    """Rewritten at parse time when the run's inputs in the config change: then staging re-runs."""
    return PLAN.fingerprint_file(wildcards.run)


def shard_records(wildcards):
    return [
        f"{CAMPAIGN_DIR}/{wildcards.run}/shards/{shard}.json"
        for shard in PLAN.shard_names(wildcards.run)
    ]


def run_setting(name):
    return lambda wildcards: getattr(PLAN.run(wildcards.run), name)


def run_dir_of(wildcards, input):
    """The run folder, derived from the staged marker (which sits at its top)."""
    return str(Path(input.staged).parent)
