#!/usr/bin/env python3
"""Worker entry point for a shard job: `scripts/pipe_worker.py RUN_DIR --shard shard-000`."""

import sys

from pipe_rules.cli.main import main

sys.exit(main(["work", *sys.argv[1:]]))
