"""Cluster transport: the `pipe-rules` Snakemake executor plugin (one array allocation per run)."""
