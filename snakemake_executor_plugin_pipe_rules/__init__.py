"""Discovery shim: Snakemake finds executor plugins by this module name (`--executor pipe-rules`).

The plugin itself lives in pipe_rules/schedulers/ (one array per run on SGE, PBS Pro, HTCondor,
LSF and SLURM); this module only re-exports what Snakemake's plugin registry looks for.
"""

from pipe_rules.schedulers.executor import Executor, ExecutorSettings, common_settings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]
