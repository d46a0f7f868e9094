"""What the Snakefile needs from a campaign config, computed once at parse time and cheaply.

The Snakefile never lists task folders: its DAG is stage -> K shard jobs -> ingest per run, so
its size grows with the number of shards, not tasks.

Re-staging an edited campaign: Snakemake re-runs a job only when an input is newer than its
outputs, and a run's staged.json depends on nothing the config holds. So at parse time each run
gets `config_fingerprint.json`, the hash of everything its staging reads (its settings, its
species with their geometries as parsed, the reactions, the tasks file's bytes), rewritten only
when the hash changes: an edit makes it newer than staged.json, stage_run runs again (adding only
new tasks), then the shards (workers skip finished tasks) and the ingestion.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.inputs.campaign import Campaign, RunConfig
from pipe_rules.inputs.config import parse_campaign
from pipe_rules.store.layout import shard_name

FINGERPRINT = "config_fingerprint.json"


@dataclass(frozen=True)
class WorkflowPlan:
    campaign: Campaign
    config_file: Path | None

    @property
    def campaign_dir(self) -> str:
        return str(self.campaign.run_root / self.campaign.name)

    def run(self, name: str) -> RunConfig:
        return self.campaign.run(name)

    def shard_names(self, run: str) -> list[str]:
        return [shard_name(i) for i in range(self.run(run).shards)]

    def run_names(self) -> list[str]:
        return [r.name for r in self.campaign.runs]

    def fingerprint_file(self, run: str) -> str:
        return f"{self.campaign_dir}/{run}/{FINGERPRINT}"

    def upstream_records(self, run: str) -> list[str]:
        source = self.run(run).from_run
        return [f"{self.campaign_dir}/{source}/results/summary.json"] if source else []


def plan_from_snakemake(config: dict[str, Any], configfiles: list) -> WorkflowPlan:
    """Validate Snakemake's `config` before any rule runs; a bad config stops the workflow with one line."""
    config_file = Path(configfiles[-1]) if configfiles else None
    try:
        campaign = parse_campaign(config, config_file)
    except PipeRulesError as exc:
        raise SystemExit(f"pipe-rules: error: {exc}") from None
    for run in campaign.runs:
        write_fingerprint(campaign, run)
    return WorkflowPlan(campaign, config_file)


def run_fingerprint(campaign: Campaign, run: RunConfig) -> str:
    """sha256 of what staging `run` reads from the config (not where the config file lives)."""
    chosen = [s for s in campaign.species if run.species is None or s.label in run.species]
    document = {
        "run": run.model_dump(), "lock_mode": campaign.lock_mode,
        "species": [] if run.tasks_file else [s.model_dump() for s in chosen],  # not where each was written
        "reactions": [r.model_dump() for r in campaign.reactions] if run.family == "ts_guess_batch_method" else [],
        "tasks_file": hashlib.sha256(Path(run.tasks_file).read_bytes()).hexdigest()
        if run.tasks_file and Path(run.tasks_file).is_file() else None,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def write_fingerprint(campaign: Campaign, run: RunConfig) -> Path:
    """Write the run's fingerprint file unless it already holds this hash (its mtime is the signal)."""
    path = campaign.run_dir(run.name) / FINGERPRINT
    text = json.dumps({"run": run.name, "sha256": run_fingerprint(campaign, run)}) + "\n"
    try:
        if path.read_text() == text:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{FINGERPRINT}.{os.getpid()}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
    return path


def staged_as_configured(campaign: Campaign, run: RunConfig) -> bool:
    """Whether Snakemake will leave the run's staging alone: its fingerprint file holds this
    config's hash and staged.json is not older (the rule's input and output). `pipe-rules run` then
    skips the pre-check of the run's inputs, which staging would not read again."""
    path = campaign.run_dir(run.name) / FINGERPRINT
    try:
        recorded = json.loads(path.read_text()).get("sha256")
        fresh = os.stat(campaign.run_dir(run.name) / "staged.json").st_mtime_ns >= os.stat(path).st_mtime_ns
    except (OSError, ValueError, AttributeError):
        return False
    return fresh and recorded == run_fingerprint(campaign, run)

