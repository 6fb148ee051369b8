# The VaSSO reproduction suite. `make help` lists the targets.
#
# Everything runs from .venv, which `make install` creates; targets that need
# it depend on its stamp, so `make demo` or `make test` on a fresh clone
# installs first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help install lock test test-fast mutation-test slurm-up slurm-down bench gpu-check clean-venv

help:  ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv, install the pinned dependencies and `vasso` (editable: import it anywhere)

# The stamp is rebuilt only when the requirements, the install script or the
# package definition (pyproject.toml) change: a second `make install` is a no-op.
$(STAMP): requirements.txt requirements-lock.txt scripts/install.sh pyproject.toml
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh
	@touch $@

lock: $(STAMP)  ## re-pin requirements-lock.txt from the current .venv
	@{ echo "# The exact set CI installs (pip freeze of a working .venv). Regenerate with 'make lock'."; \
	   $(VENV)/bin/pip freeze --all --exclude-editable | grep -v '^pip=='; } > requirements-lock.txt

test: $(STAMP)  ## run the test suite (Slurm tests need `make slurm-up` first)
	$(PY) -m pytest tests

test-fast: $(STAMP)  ## the tests without the slow and Slurm ones
	$(PY) -m pytest tests -m "not slow and not slurm"

mutation-test: $(STAMP)  ## put ~60 single bugs into a copy of the tree, one at a time; print the kill rate (~20 min, not in CI)
	$(PY) scripts/mutation_test.py

slurm-up:  ## start a real single-node Slurm cluster (root; installs slurm-wlm and munge if missing)
	@bash scripts/slurm-up.sh

slurm-down:  ## stop the single-node Slurm cluster
	@bash scripts/slurm-down.sh

clean-venv:  ## remove .venv
	rm -rf $(VENV)

# The paper's tables and figures, and the demo.
-include results/tables.mk
# The performance benchmark.
-include benchmarks/perf.mk
