"""Clusters for the search tests: started once per module, on every backend."""

from __future__ import annotations

import cloudpickle
import pytest

import kale_ext as kale
from tests.conftest import slurm_available
from tests.search import trainables

# Workers need not import the tests package: ship the trial functions by value.
cloudpickle.register_pickle_by_value(trainables)

BACKENDS = {
    "dask-local": dict(kind="local", backend="dask", workers=2),
    "ipyparallel-local": dict(kind="local", backend="ipyparallel", workers=2),
    "dask-slurm": dict(profile="slurm-dev", backend="dask", workers=2),
}


@pytest.fixture(scope="module")
def module_state(tmp_path_factory):
    import dask.config

    state = tmp_path_factory.mktemp("kale-search-state")
    with dask.config.set({"kale.state-dir": str(state)}):
        yield state


def _start(name, module_state):
    if name.endswith("slurm") and not slurm_available():
        pytest.skip("no running Slurm on this machine: start it with deploy/slurm-dev/up.sh")
    cluster = kale.start_cluster(**BACKENDS[name])
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def dask_cluster(module_state):
    yield from _start("dask-local", module_state)


@pytest.fixture(scope="module", params=["dask-local", "ipyparallel-local",
                                        pytest.param("dask-slurm", marks=pytest.mark.slurm)])
def any_cluster(request, module_state):
    yield from _start(request.param, module_state)
