# The commands of the README. Each sets up everything it needs on a fresh Debian machine.
#   make demo   - create .venv, install pipe_rules and its engines, run the demo campaign (config.yaml)
#   make check  - format, lint and import checks, then the fast tests (about a minute; no schedulers)
#   make test   - the same checks, a real single-node SLURM and Grid Engine, then every test (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pipe_rules-installed

.PHONY: demo check test setup clean-demo

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster]' --config-settings editable_mode=compat
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pipe-rules run config.yaml --profile profiles/local

check: $(STAMP)
	CHECK=1 bash tests/run_tests.sh

test: $(STAMP)
	bash tests/run_tests.sh

clean-demo:
	rm -rf runs .snakemake
