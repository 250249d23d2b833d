# make demo: a real hyperparameter search on a local cluster, with live progress.
# make test: everything the tests need (Python deps, the lab extension, a local Slurm, the
#            multi-node test bed, chromium for browser tests, Horovod), then every test;
#            the test bed is removed when the tests end, whatever their result.
# Both are idempotent and work inside .venv in this checkout.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kale-installed
LABEXT := kale_ext/labextension/static/style.js
# jlpm and jupyter come with jupyterlab in the venv; the lab build needs them on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test lint labext slurm-up slurm-down testbed-up testbed-down browser horovod mpi \
	gpu-check bench bench-ci clean hub

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[torch,widgets,notebooks,export,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m kale_ext.demo

# The lab extension: built by pip install's hook on a fresh clone; rebuilt here when its
# sources change, then linked into the venv's JupyterLab.
$(LABEXT): $(STAMP) package.json $(wildcard src/*.ts) $(wildcard style/*.css)
	jlpm install
	jlpm build
	jupyter labextension develop --overwrite .
	touch $(LABEXT)

labext: $(LABEXT)

slurm-up:
	bash deploy/slurm-dev/up.sh

slurm-down:
	bash deploy/slurm-dev/down.sh

# The multi-node test bed (deploy/testbed/README.md): nodes in network namespaces under a
# second slurmctld; clients reach it through SLURM_CONF (bash deploy/testbed/env.sh).
testbed-up:
	bash deploy/testbed/up.sh

testbed-down:
	bash deploy/testbed/down.sh

browser: $(STAMP)
	PY=$(PY) bash deploy/browser/install.sh

horovod: $(STAMP)
	bash deploy/horovod/build.sh $(PY)

# The JupyterHub of tests/hub: the hub extra, configurable-http-proxy (npm, into
# .venv/hub-proxy) and the local users alice and bob (root).
hub: $(STAMP)
	PY=$(PY) bash deploy/hub/install.sh

# MPICH (apt-get, as root) and mpi4py built against it, for ipyparallel MPI engine sets.
mpi: $(STAMP)
	bash deploy/mpi/install.sh $(PY)

# For a machine with an NVIDIA GPU: its own venv with torch's CUDA build, then kale on the
# GPUs (device, throughput, DDP and Horovod over NCCL) with figures; exits 2 without a GPU.
gpu-check:
	PYTHON=$(PYTHON) bash deploy/gpu-check/run.sh

# ruff (pydocstyle on the package's API included), mypy over the whole package, and
# import-linter's contracts in pyproject.toml: floors that only import downwards, no
# cycle between packages, no import of another package's private module.
lint: $(STAMP)
	$(PY) -m ruff check kale_ext tests
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

# testbed-up comes last: a prerequisite failing after it would leave the test bed running.
# KALE_STRICT=1 (tests/strict.py): a test that would skip for a missing component fails.
test: $(STAMP) $(LABEXT) slurm-up browser horovod mpi hub lint testbed-up
	trap 'bash deploy/testbed/down.sh' EXIT; trap 'exit 130' INT TERM; \
	KALE_STRICT=1 $(PY) -m pytest tests --ignore=tests/benchmarks

# Every benchmark asserts its target as a ratio to a baseline run beside it (strict: a
# missing component fails). bench-ci: the fast subset whose targets are met, run by CI.
bench: $(STAMP) slurm-up horovod
	KALE_STRICT=1 $(PY) -m pytest tests/benchmarks -s -m benchmark

bench-ci: $(STAMP) slurm-up horovod
	KALE_STRICT=1 $(PY) -m pytest tests/benchmarks -s -m bench_ci

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache node_modules lib kale_ext/labextension
