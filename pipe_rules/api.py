"""The import path for host programs such as ARC: `from pipe_rules.api import PipeAPI`.

Everything a host needs, from the layer that owns it; the modules behind these names may move,
these names stay.
"""

from pipe_rules.contracts.errors import ConfigError, PipeRulesError, SpecError, StagingError, StateError
from pipe_rules.contracts.records import FailedTask
from pipe_rules.contracts.spec import TaskSpec
from pipe_rules.host.api import PipeAPI, RunHandle, RunPoll
from pipe_rules.host.run_results import OwnerRecord, RunResults
from pipe_rules.host.planner import PlannedRun, Plan, plan
from pipe_rules.inputs.arc_input import ArcSpecies, read_arc_input

__all__ = ["ArcSpecies", "ConfigError", "FailedTask", "OwnerRecord", "PipeAPI", "PipeRulesError", "Plan", "PlannedRun",
           "RunHandle", "RunPoll", "RunResults", "SpecError", "StagingError", "StateError", "TaskSpec", "plan",
           "read_arc_input"]
