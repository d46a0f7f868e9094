"""pipe_rules: ARC's pipe mode as a Snakemake workflow."""

__version__ = "0.1.0"
