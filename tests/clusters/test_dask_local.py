"""A real local Dask cluster run by its detached daemon: work, scale, reconnect, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from concurrent.futures import Future

import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext._errors import ClusterNotFound, ConfigError
from kale_ext.clusters._dask import DaskCluster
from tests.conftest import group_alive, process_gone, run_python, wait_for, worker_pages

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    c = kale.start_cluster()
    yield c
    if registry.read("clusters", c.id) is not None:
        c.stop()
    with contextlib.suppress(ProcessLookupError):  # whatever the daemon left behind
        os.killpg(c.record.owner_pid, signal.SIGKILL)


def _python(code: str) -> str:
    return run_python(code, timeout=90)


def test_local_cluster_runs_work_scales_and_stops(cluster):
    assert isinstance(cluster, DaskCluster)
    assert cluster.n_workers() == 2
    assert cluster.record.address.startswith("tls://127.0.0.1:")

    future = cluster.submit(pow, 2, 10)
    assert isinstance(future, Future)
    seen: list[int] = []
    future.add_done_callback(lambda f: seen.append(f.result()))
    assert future.result(timeout=30) == 1024
    wait_for(lambda: seen, 5, what="the done callback")
    assert seen == [1024]

    failing = cluster.submit(int, "not a number")
    assert isinstance(failing.exception(timeout=30), ValueError)

    cluster.scale(3)
    cluster.wait_for_workers(3, timeout=60)
    assert len(cluster.run_on_workers(os.getpid)) == 3
    cluster.scale(1)
    wait_for(lambda: cluster.n_workers() == 1, 30, what="scale(1)")
    status = cluster.status()
    assert status.state == "running" and len(status.workers) == 1
    assert status.cores == 1 and status.memory > 0
    assert status.dashboard and status.dashboard.startswith("https://127.0.0.1:")
    assert cluster.id in cluster._repr_html_()
    # A worker's own web server has no login: it serves none of its pages.
    pages = worker_pages(cluster.client)
    assert pages and set(pages.values()) == {404}, pages

    pid = cluster.record.owner_pid
    cluster.stop()
    assert registry.read("clusters", cluster.id) is None
    assert process_gone(pid), "the daemon outlived stop()"
    assert not (registry.kind_dir("clusters") / cluster.id).exists()
    # What it shows now: stopped, not unreachable, and no error text.
    stopped = cluster.status()
    assert stopped.state == "stopped" and stopped.workers == [], stopped
    html = cluster._repr_html_()
    assert "stopped" in html and "unreachable" not in html and "Error" not in html, html


def test_cancel_a_running_task(cluster):
    future = cluster.submit(time.sleep, 30)
    time.sleep(0.5)
    assert future.cancel()
    assert future.cancelled()
    assert cluster.submit(sum, [1, 2]).result(timeout=30) == 3


def test_record_and_files_are_private(cluster):
    record = registry.read("clusters", cluster.id)
    assert record is not None
    assert record["owner_pid"] == cluster.record.owner_pid != os.getpid()
    assert record["backend"] == "dask" and record["kind"] == "local"
    folder = registry.kind_dir("clusters")
    assert (folder / f"{cluster.id}.json").stat().st_mode & 0o777 == 0o600
    for name in ("ca.pem", "cert.pem", "key.pem", "spec.json", "daemon.log"):
        assert (folder / cluster.id / name).stat().st_mode & 0o777 == 0o600, name


def test_plain_tcp_client_is_refused(cluster):
    # In a process of its own: a client that failed to connect leaves Dask's shared event
    # loop thread behind in the process, which the next tests' clients would inherit.
    tcp = cluster.record.address.replace("tls://", "tcp://")
    out = _python(
        "from distributed import Client\n"
        f"for address in ({tcp!r}, {cluster.record.address!r}):  # no certificates\n"
        "    try:\n"
        "        Client(address, timeout=3, set_as_default=False)\n"
        "    except (OSError, TimeoutError, TypeError, ValueError) as e:\n"
        "        print('refused', type(e).__name__)\n"
        "    else:\n"
        "        print('connected')\n")
    assert [line.split()[0] for line in out.splitlines() if line.strip()] == ["refused"] * 2


def test_reconnect_from_a_second_process_and_stop_from_a_third(cluster):
    out = _python(
        "import json, kale_ext as kale\n"
        f"c = kale.connect({cluster.id!r})\n"
        "r = c.submit(lambda x: x * 3, 14).result(timeout=30)\n"
        "c.scale(3); c.wait_for_workers(3, timeout=60)\n"
        "print(json.dumps({'result': r, 'workers': c.n_workers()}))\n"
    )
    assert json.loads(out.strip().splitlines()[-1]) == {"result": 42, "workers": 3}
    assert cluster.n_workers() == 3  # the first process sees the change

    pid = cluster.record.owner_pid
    _python(f"import kale_ext as kale; kale.stop({cluster.id!r})")
    assert process_gone(pid)
    assert registry.read("clusters", cluster.id) is None
    with pytest.raises(ClusterNotFound):
        kale.connect(cluster.id)


def test_cluster_outlives_the_process_that_started_it():
    out = _python("import kale_ext as kale; c = kale.start_cluster(workers=1); print(c.id)")
    cluster_id = out.strip().splitlines()[-1]
    c = kale.connect(cluster_id)
    try:
        assert c.submit(abs, -5).result(timeout=30) == 5
        assert [s.id for s in kale.clusters()] == [cluster_id]
    finally:
        pid = c.record.owner_pid
        c.stop()
        assert process_gone(pid)


def test_stale_record_is_cleaned_with_what_its_dead_daemon_left(cluster):
    pid = cluster.record.owner_pid
    os.kill(pid, signal.SIGKILL)  # the daemon dies without cleaning up; its workers live on
    assert process_gone(pid)
    assert group_alive(pid)
    assert registry.read("clusters", cluster.id) is not None
    assert kale.clusters() == []
    assert registry.read("clusters", cluster.id) is None
    assert not (registry.kind_dir("clusters") / cluster.id).exists()
    wait_for(lambda: not group_alive(pid), 30, 0.2, what="the daemon's workers to end")


def test_bad_local_option_fails_before_anything_starts():
    with pytest.raises(ConfigError, match="queue"):
        kale.start_cluster(queue="debug")
    assert list(registry.records("clusters")) == []


def test_daemon_that_fails_early_reports_why():
    from kale_ext._errors import ClusterError

    # 192.0.2.0/24 is reserved for documentation: no interface here has that address.
    with pytest.raises(ClusterError) as err:
        kale.start_cluster(interface_host="192.0.2.123")
    text = str(err.value)
    assert "exited with code 1 before its scheduler came up" in text
    assert "Cannot assign requested address" in text  # the root cause, not just a wrapper
    assert "'interface_host': '192.0.2.123'" in text
    assert list(registry.records("clusters")) == []


def test_tls_can_be_turned_off_for_plain_tcp():
    c = kale.start_cluster(workers=1, tls="off-i-know")
    try:
        assert c.record.address.startswith("tcp://127.0.0.1:")
        assert c.record.security is None
        assert c.submit(len, "abc").result(timeout=30) == 3
    finally:
        c.stop()
