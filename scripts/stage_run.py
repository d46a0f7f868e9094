"""Snakemake `script:` of rule stage_run: stage one run from the workflow's effective config."""

import json
import os
import sys

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.inputs.config import parse_campaign
from pipe_rules.inputs.staging import stage_run

snakemake = globals()["snakemake"]  # injected by Snakemake
sys.stderr = open(snakemake.log[0], "w", buffering=1)
os.umask(os.umask(0) | 0o022)  # run folders are never group/other-writable (as in the CLI)
configfile = snakemake.params.configfile  # relative paths in the config are relative to it
try:
    campaign = parse_campaign(snakemake.config, configfile)
    report = stage_run(campaign, snakemake.wildcards.run)
except PipeRulesError as exc:
    print(f"pipe-rules: error: {exc}", file=sys.stderr)
    raise SystemExit(2)
print(report.line(), file=sys.stderr)
with open(snakemake.output.staged, "w") as handle:
    json.dump({"new_tasks": report.new_tasks, "existing_tasks": report.existing_tasks,
               "duplicates": report.duplicates, "removed_tasks": report.removed_tasks,
               "removed_owners": list(report.removed_owners), "line": report.line()}, handle)
