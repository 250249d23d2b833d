# make demo: a real hyperparameter search on a local cluster, with live progress.
# make test: everything the tests need (Python deps, local Slurm, ...), then every test.
# Both are idempotent and work inside .venv in this checkout.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kale-installed

.PHONY: demo test lint slurm-up slurm-down bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[torch,widgets,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m kale_ext.demo

slurm-up:
	bash deploy/slurm-dev/up.sh

slurm-down:
	bash deploy/slurm-dev/down.sh

lint: $(STAMP)
	$(PY) -m ruff check kale_ext tests
	$(PY) -m mypy

test: $(STAMP) slurm-up lint
	$(PY) -m pytest tests --ignore=tests/benchmarks

bench: $(STAMP) slurm-up
	$(PY) -m pytest tests/benchmarks -s -m benchmark

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
