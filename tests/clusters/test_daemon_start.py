"""The daemon helper: after a first start, Dask daemons are forked from a process that
imported Dask once, with the starting process's environment and Dask configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dask.config
import pytest

import kale_ext as kale
from kale_ext.clusters import _daemon_start
from kale_ext.clusters._dask import DaskCluster
from tests.conftest import wait_for


@pytest.fixture
def state(tmp_path):
    folder = tmp_path / "state"
    with dask.config.set({"kale.state-dir": str(folder)}):
        yield folder


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.timeout(600)
def test_a_start_forks_its_daemon_from_the_helper(state, monkeypatch):
    monkeypatch.delenv("KALE_DAEMON_HELPER", raising=False)  # off: a new Python
    first = kale.start_cluster(kind="local", backend="dask", workers=1)
    try:
        assert isinstance(DaskCluster._daemons[first.id], subprocess.Popen)
        assert first.client.submit(sum, [1, 2]).result(timeout=60) == 3
    finally:
        first.stop()
    monkeypatch.setenv("KALE_DAEMON_HELPER", "1")  # the helper, asked for
    _daemon_start.prepare()  # what a start leaves behind (this user's may run already)
    assert _daemon_start.wait_for_helper(300), "no helper came up"

    monkeypatch.setenv("KALE_TEST_DAEMON_MARK", "asked")
    monkeypatch.setenv("DASK_KALE__TEST_MARK", "from-the-environment")
    second = kale.start_cluster(kind="local", backend="dask", workers=1)
    daemon = DaskCluster._daemons.get(second.id)
    try:
        assert isinstance(daemon, _daemon_start.ForkedDaemon)
        pid = second.record.owner_pid
        assert pid == daemon.pid and _parent(pid) != os.getpid()  # nobody's child here
        def mark() -> str | None:
            return os.environ.get("KALE_TEST_DAEMON_MARK")

        assert second.client.run_on_scheduler(mark) == "asked"  # the daemon's environment
        assert set(second.client.run(mark).values()) == {"asked"}  # and its workers'
        mark = second.client.run_on_scheduler(lambda: dask.config.get("kale.test_mark"))
        assert mark == "from-the-environment"
        assert second.client.submit(sum, [2, 3]).result(timeout=60) == 5
    finally:
        second.stop()
    wait_for(lambda: daemon.poll() is not None, timeout=60, what="the forked daemon's exit")
    assert daemon.returncode is not None


def test_no_helper_is_asked_under_a_daemon_prefix(state):
    with dask.config.set({"kale.daemon-prefix": "env"}):
        assert _daemon_start.spawn_forked(state / "spec.json", state, 2) is None


def test_a_helper_knows_when_kale_changed_under_it(tmp_path):
    stamps = _daemon_start._kale_stamps()
    assert _daemon_start.__file__ in stamps  # the modules it imported, kale's own
    module = tmp_path / "module.py"
    module.write_text("x = 1\n")
    stamps = {str(module): module.stat().st_mtime_ns}
    assert not _daemon_start._changed(stamps)
    os.utime(module, ns=(1, 1))
    assert _daemon_start._changed(stamps)
    module.unlink()
    assert _daemon_start._changed(stamps)
