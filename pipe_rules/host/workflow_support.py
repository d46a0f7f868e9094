"""What the Snakefile needs from a campaign config, computed once at parse time and cheaply.

The Snakefile never lists task folders: its DAG is stage -> K shard jobs -> ingest per run, so
its size grows with the number of shards, not tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipe_rules.contracts.errors import PipeRulesError
from pipe_rules.inputs.campaign import Campaign, RunConfig
from pipe_rules.inputs.config import parse_campaign
from pipe_rules.store.layout import shard_name


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

    def upstream_records(self, run: str) -> list[str]:
        source = self.run(run).from_run
        return [f"{self.campaign_dir}/{source}/results/records.json"] if source else []


def plan_from_snakemake(config: dict[str, Any], configfiles: list) -> WorkflowPlan:
    """Validate Snakemake's `config` before any rule runs; a bad config stops the workflow with one line."""
    config_file = Path(configfiles[-1]) if configfiles else None
    try:
        campaign = parse_campaign(config, config_file)
    except PipeRulesError as exc:
        raise SystemExit(f"pipe-rules: error: {exc}") from None
    return WorkflowPlan(campaign, config_file)
