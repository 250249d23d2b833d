"""A real local ipyparallel cluster: work, scaling, adapting, reconnecting and stopping."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future

import cloudpickle
import ipyparallel
import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext.clusters._ipyparallel import IPyParallelCluster
from tests.conftest import group_alive, process_gone, run_python, wait_for

pytestmark = pytest.mark.slow

OFFSET = 100  # a module global, reachable on engines because functions travel by cloudpickle

# Engines cannot import this test module by name; ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def add(a: int, b: int) -> int:
    return a + b + OFFSET


def fail(message: str) -> None:
    raise ValueError(message)


def _python(code: str) -> str:
    return run_python(code, timeout=90)


@pytest.fixture
def started():
    clusters: list[IPyParallelCluster] = []

    def start(**kwargs) -> IPyParallelCluster:
        c = kale.start_cluster("local", backend="ipyparallel", **kwargs)
        assert isinstance(c, IPyParallelCluster)
        clusters.append(c)
        return c

    yield start
    for c in clusters:
        if registry.read("clusters", c.id) is not None:
            c.stop()


def test_local_cluster_runs_scales_reconnects_and_is_stopped_elsewhere(started):
    c = started(workers=2)
    assert len(c.client.ids) == 2
    assert isinstance(c.client, ipyparallel.Client)
    assert isinstance(c.view, ipyparallel.LoadBalancedView)

    # submit: a concurrent future, with callbacks and the original exception type.
    fut = c.submit(add, 1, b=2)
    assert isinstance(fut, Future)
    seen = threading.Event()
    fut.add_done_callback(lambda f: seen.set())
    assert fut.result(timeout=30) == 103
    assert seen.wait(5)
    assert c.submit(lambda x: x * OFFSET, 3).result(timeout=30) == 300
    bad = c.submit(fail, "no good")
    with pytest.raises(ValueError, match="no good") as info:
        bad.result(timeout=30)
    assert "Remote traceback" in "".join(info.value.__notes__)

    # run_on_workers: once per engine, keyed by engine name.
    pids = c.run_on_workers(os.getpid)
    assert sorted(pids) == ["engine-0", "engine-1"]
    assert len(set(pids.values())) == 2

    status = c.status()
    assert status.state == "running" and len(status.workers) == 2
    assert all(w.cores >= 1 and w.memory > 0 and w.host for w in status.workers)
    assert c.id in c._repr_html_()
    # The record names the controller as owner, and its keys stay private.
    assert c.record.owner_pid != os.getpid()
    assert os.stat(c.record.security).st_mode & 0o077 == 0
    assert os.stat(c.record.address).st_mode & 0o077 == 0

    c.scale(3)
    c.wait_for_workers(3, timeout=60)
    assert len(c.client.ids) == 3
    c.scale(2)
    assert len(c.client.ids) == 2
    assert sum(registry.read("clusters", c.id)["options"]["engine_sets"].values()) == 2

    # Reconnect from another process through the registry and run work there.
    out = _python(
        "import json, os, kale_ext as kale\n"
        f"c = kale.connect({c.id!r})\n"
        "print(json.dumps({'n': len(c.status().workers), "
        "'r': c.submit(pow, 2, 10).result(30)}))\n"
    )
    assert json.loads(out.strip().splitlines()[-1]) == {"n": 2, "r": 1024}
    assert [s.id for s in kale.clusters()] == [c.id]

    # Stop it from a third process: controller and engines exit, the record goes.
    controller = c.record.owner_pid
    engines = list(pids.values())
    _python(f"import kale_ext as kale; kale.stop({c.id!r})")
    assert process_gone(controller)
    assert all(process_gone(pid) for pid in engines)
    assert registry.read("clusters", c.id) is None
    assert not os.path.exists(c.record.security)
    # The first process's handle shows it stopped, not unreachable.
    stopped = c.status()
    assert stopped.state == "stopped" and stopped.workers == [], stopped
    assert "stopped" in c._repr_html_() and "unreachable" not in c._repr_html_()


def test_cancel_and_adapt(started):
    c = started(workers=1)
    slow = [c.submit(time.sleep, 1.5) for _ in range(2)]
    queued = slow[1]
    assert queued.cancel()
    assert queued.cancelled()
    assert slow[0].result(timeout=30) is None

    # Adaptive: four waiting tasks grow the cluster to its maximum, quiet shrinks it back.
    c.adapt(1, 3, interval=0.3, wait_count=2)
    futures = [c.submit(time.sleep, 3) for _ in range(4)]
    wait_for(lambda: len(c.client.ids) == 3, 60, 0.2, what="adapt to grow to 3")
    for f in futures:
        f.result(timeout=60)
    wait_for(lambda: len(c.client.ids) == 1, 60, 0.2, what="adapt to shrink to 1")
    c.scale(1)  # an explicit scale takes over from adapting
    assert c._adaptor is None


def test_stale_record_is_cleaned_with_what_its_dead_controller_left(started):
    c = started(workers=1)
    pid = c.record.owner_pid
    os.kill(pid, signal.SIGKILL)  # the controller dies; its scheduler processes live on
    assert process_gone(pid)
    assert group_alive(pid)
    assert kale.clusters() == []
    assert registry.read("clusters", c.id) is None
    wait_for(lambda: not group_alive(pid), 30, 0.2, what="the controller's schedulers to end")
