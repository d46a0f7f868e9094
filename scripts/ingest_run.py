#!/usr/bin/env python3
"""Ingestion entry point: `scripts/ingest_run.py RUN_DIR` writes RUN_DIR/results/records.jsonl, failed.jsonl and summary.json."""

import sys

from pipe_rules.cli.main import main

sys.exit(main(["ingest", *sys.argv[1:]]))
