"""Clusters for the distributed-training tests: one per backend and module."""

from __future__ import annotations

import importlib.util

import cloudpickle
import pytest

import kale_ext as kale
from tests.conftest import slurm_available
from tests.training import trainables

# Workers need not import the tests package: ship the training functions by value.
cloudpickle.register_pickle_by_value(trainables)

CLUSTERS = {
    "dask-local": dict(kind="local", backend="dask", workers=2),
    "ipyparallel-local": dict(kind="local", backend="ipyparallel", workers=2),
    "dask-slurm": dict(profile="slurm-dev", backend="dask", workers=2),
    "ipyparallel-slurm": dict(profile="slurm-dev", backend="ipyparallel", workers=2),
}

HOROVOD = importlib.util.find_spec("horovod") is not None
needs_horovod = pytest.mark.skipif(
    not HOROVOD, reason="the horovod module is not installed: build it with "
                        "`bash deploy/horovod/build.sh` (make test does)")


@pytest.fixture(scope="module")
def module_state(tmp_path_factory):
    import dask.config

    state = tmp_path_factory.mktemp("kale-training-state")
    with dask.config.set({"kale.state-dir": str(state)}):
        yield state


def start(name):
    if name.endswith("slurm") and not slurm_available():
        pytest.skip("no running Slurm on this machine: start it with deploy/slurm-dev/up.sh")
    return kale.start_cluster(**CLUSTERS[name])


@pytest.fixture(scope="module", params=["dask-local", "ipyparallel-local"])
def local_cluster(request, module_state):
    cluster = start(request.param)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module", params=[pytest.param("dask-slurm", marks=pytest.mark.slurm),
                                        pytest.param("ipyparallel-slurm",
                                                     marks=pytest.mark.slurm)])
def slurm_cluster(request, module_state):
    cluster = start(request.param)
    yield cluster
    cluster.stop()
