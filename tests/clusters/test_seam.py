"""The placement API of ``Cluster``: one conformance test for every backend, and a
search and a 2-rank distributed run on a backend written only against that API."""

from __future__ import annotations

import time

import pytest

import kale_ext as kale
from kale_ext.clusters import Cluster, Slot
from tests.clusters.thread_backend import ThreadCluster
from tests.conftest import wait_for
from tests.search import trainables as search_trainables
from tests.training import checks


@pytest.fixture
def threads():
    cluster = ThreadCluster(2)
    yield cluster
    cluster.stop()


def _start(name: str) -> Cluster:
    if name == "threads":
        return ThreadCluster(2)
    return kale.start_cluster(kind="local", backend=name, workers=2)


@pytest.fixture(params=["threads", pytest.param("dask", marks=pytest.mark.slow),
                        pytest.param("ipyparallel", marks=pytest.mark.slow)])
def any_cluster(request):
    cluster = _start(request.param)
    yield cluster
    cluster.stop()


def _where() -> str:
    import os
    import threading

    return f"{os.getpid()}:{threading.get_ident()}"


def test_placement_api(any_cluster):
    slots = any_cluster.slots()
    assert len(slots) == 2 and all(isinstance(s, Slot) for s in slots)
    assert len({s.key for s in slots}) == 2 and len({s.name for s in slots}) == 2
    wait_for(lambda: not any(s.busy for s in any_cluster.slots()), 30, what="idle workers")

    # Each slot runs its tasks itself: the same worker answers every time.
    places = [{any_cluster.submit_to(s, _where, key=f"where-{s.name}-{i}").result(30)
               for i in range(3)} for s in slots]
    assert all(len(p) == 1 for p in places) and places[0] != places[1]

    busy = any_cluster.submit_to(slots[0], time.sleep, 3)
    wait_for(lambda: [s.busy for s in any_cluster.slots()] == [True, False], 30,
             what="the first worker to show busy")
    busy.result(30)
    assert set(any_cluster.run_on_workers(_where)) == {s.name for s in slots}
    failing = any_cluster.submit_to(slots[1], int, "not a number")
    assert isinstance(failing.exception(timeout=30), ValueError)
    any_cluster.disable_task_retries()


def test_dask_scheduler_allows_no_task_retries_once_disabled():
    cluster = kale.start_cluster(kind="local", backend="dask", workers=1)
    try:
        cluster.disable_task_retries()
        assert cluster.client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.allowed_failures) == 0
    finally:
        cluster.stop()


def test_search_runs_on_a_backend_of_the_public_api(threads):
    search = kale.Search(search_trainables.quadratic, {"x": kale.uniform(0, 1)},
                         metric="score", mode="max", trials=4, cluster=threads,
                         seed=1).start().wait(120)
    frame = search.results()
    assert len(frame) == 4 and set(frame["state"]) == {"completed"}
    assert (frame["epoch"] == 9).all()
    assert threads.retries_disabled  # Search.start asked the backend through the API


def test_distributed_run_on_a_backend_of_the_public_api(threads):
    checks.allreduce(threads)
    assert threads.retries_disabled
    assert not any(s.busy for s in threads.slots())
