import sys

from pipe_rules.cli.main import main

sys.exit(main())
