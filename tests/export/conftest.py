"""One real search, run once for the export tests: completed, failed, pruned, stopped."""

from __future__ import annotations

import cloudpickle
import dask.config
import pytest

import kale_ext as kale
from tests.clusters.thread_backend import ThreadCluster
from tests.conftest import wait_for
from tests.export import trainables

cloudpickle.register_pickle_by_value(trainables)

SPACE = {
    "x": kale.uniform(0.0, 1.0),
    "lr": kale.loguniform(1e-4, 1e-1),
    "layers": kale.int(1, 4),
    "opt": kale.choice(["adam", "sgd"]),
    "arch": kale.choice([{"kind": "mlp", "width": kale.int(8, 64)},
                         {"kind": "cnn", "kernel": kale.choice([3, 5])}]),
    "epochs": 6,
}


@pytest.fixture(scope="package")
def search(tmp_path_factory):
    """Six trials one at a time on in-process workers, under ASHA (see trainables.QUALITY),
    logged live to TensorBoard in <state>/live."""
    state = tmp_path_factory.mktemp("kale-export-state")
    cluster = ThreadCluster(2)
    with dask.config.set({"kale.state-dir": str(state)}):
        search = kale.Search(
            trainables.planted, SPACE, metric="score", mode="max", trials=6,
            max_concurrent=1, seed=3, name="export-test", store=state / "export.kale.sqlite",
            scheduler=kale.ASHA(max_t=6, grace_period=1, reduction_factor=3),
            log_to=f"tensorboard:{state / 'live'}", cluster=cluster).start()
        try:
            stopped = trainables.STOPPED
            wait_for(lambda: search.store.metrics(stopped), 60,
                     what=f"trial {stopped} to report")
            search.stop(stopped)
            search.wait(60)
            yield search
        finally:
            if search.running:
                search.stop()
            cluster.stop()
