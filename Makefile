# The two commands of the README. Both set up everything they need on a fresh Debian machine.
#   make demo   - create .venv, install pipe_rules and its engines, run the demo campaign (config.yaml)
#   make test   - the same set-up plus test tools and a real single-node SLURM, then the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pipe_rules-installed

.PHONY: demo test setup clean-demo

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster]' --config-settings editable_mode=compat
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pipe-rules run config.yaml --profile profiles/local

test: $(STAMP)
	bash tests/run_tests.sh

clean-demo:
	rm -rf runs .snakemake
