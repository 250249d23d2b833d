"""``%kale status`` counts its workers and cores in words that agree with the number."""

from __future__ import annotations

from kale_ext.clusters import ClusterStatus, WorkerInfo
from kale_ext.magics import status_text


def _status(cores: list[int]) -> ClusterStatus:
    workers = [WorkerInfo(name=str(i), address=f"tcp://127.0.0.1:{4000 + i}",
                          host="localhost", cores=c, memory=2**30)
               for i, c in enumerate(cores)]
    return ClusterStatus(id="kc-1", backend="dask", kind="local", state="running",
                         address="tcp://127.0.0.1:8786", dashboard=None, workers=workers)


def test_one_worker_and_one_core_are_singular():
    assert status_text(_status([1])) == \
        "kc-1: dask on local, running, 1 worker, 1 core; dashboard -"


def test_several_are_plural_and_none_is_plural():
    assert "2 workers, 3 cores;" in status_text(_status([1, 2]))
    assert "0 workers, 0 cores;" in status_text(_status([]))
