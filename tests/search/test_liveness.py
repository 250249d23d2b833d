"""Liveness of a search's trials on a real local Dask cluster of one worker process.

- The trials that one worker process runs at the same time share one metric channel
  connection: one socket and one sender thread in the process, whatever the number of
  trials.
- A trial whose function returned is not failed for silence while its result travels
  back: here the worker's event loop is held up after the trial returned, so its task's
  result reaches the driver seconds after ``heartbeat_timeout``, and the trial completes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import kale_ext as kale

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import it

THREADS = 6


def together(config: dict[str, Any]) -> None:
    """Wait until every trial runs, then report what this process's channel looks like."""
    from kale_ext.trial import current

    folder = Path(config["folder"])
    (folder / str(config["i"])).touch()
    deadline = time.monotonic() + 120
    while len(list(folder.iterdir())) < THREADS and time.monotonic() < deadline:
        time.sleep(0.05)
    ctx = current()
    assert ctx is not None and ctx.client is not None
    connection = ctx.client.connection  # type: ignore[attr-defined]
    senders = sum(t.name.startswith("kale-channel-") for t in threading.enumerate())
    kale.report(step=0, loss=1.0, pid=os.getpid(), connection=id(connection),
                streams=connection.streams(), senders=senders,
                together=len(list(folder.iterdir())))


def returns_then_stalls(config: dict[str, Any]) -> float:
    """Report, then hold up the worker's event loop so that the task's result is late."""
    from distributed import get_worker

    kale.report(step=0, loss=1.0)
    stalled = threading.Event()

    def stall() -> None:
        stalled.set()
        time.sleep(config["stall"])

    get_worker().loop.add_callback(stall)
    assert stalled.wait(60)
    return 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kale.Cluster]:
    import dask.config

    with dask.config.set({"kale.state-dir": str(tmp_path_factory.mktemp("state"))}), \
            kale.start_cluster("local", workers=1, threads_per_worker=THREADS) as c:
        c.client.wait_for_workers(1, timeout=120)
        yield c


def _search(cluster: kale.Cluster, fn: Any, space: dict[str, Any], trials: int,
            tmp_path: Path, **options: Any) -> kale.Search:
    return kale.Search(fn, space, metric="loss", mode="min", algorithm="grid", trials=trials,
                       max_concurrent=trials, retries=0, cluster=cluster,
                       store=str(tmp_path / "s.kale.sqlite"), **options)


def test_trials_of_one_process_share_one_connection(cluster: kale.Cluster,
                                                    tmp_path: Path) -> None:
    folder = tmp_path / "running"
    folder.mkdir()
    search = _search(cluster, together, {"i": kale.grid(list(range(THREADS))),
                                         "folder": kale.choice([str(folder)])},
                     THREADS, tmp_path).start().wait(300)
    rows = [r.values for r in search.store.metrics()]
    assert len(rows) == THREADS
    assert all(r["together"] == THREADS for r in rows), rows  # all ran at once
    assert len({r["pid"] for r in rows}) == 1, rows
    assert len({r["connection"] for r in rows}) == 1, rows  # one connection object...
    assert all(r["senders"] == 1 for r in rows), rows  # ...with the process's one thread
    assert max(r["streams"] for r in rows) == THREADS, rows  # carrying every trial's stream
    assert set(search.results()["state"]) == {"completed"}


def test_a_trial_whose_result_is_late_is_not_failed(cluster: kale.Cluster,
                                                    tmp_path: Path) -> None:
    search = _search(cluster, returns_then_stalls, {"stall": kale.choice([6.0])}, 1, tmp_path,
                     heartbeat_timeout=1.0).start().wait(300)
    states = [t.target.label for t in search.store.transitions()]
    assert "failed" not in states, [(t.target.label, t.reason)
                                    for t in search.store.transitions()]
    assert list(search.results()["state"]) == ["completed"]


def test_a_driver_behind_on_its_channel_does_not_take_its_delay_for_silence() -> None:
    """The handler (the driver) is held up far past the timeout: nobody is lost meanwhile;
    a trial whose process is gone is lost once the driver is caught up again."""
    from kale_ext.channel import ChannelClient, ChannelServer, new_key
    from kale_ext.search._liveness import Liveness
    from kale_ext.search._runs import TrialRun
    from kale_ext.trial import TrialState

    key, held, holding = new_key(), threading.Event(), threading.Event()

    def handler(batch: list[Any]) -> None:
        if any(m.kind == "report" for m in batch):
            holding.set()
            held.wait(60)  # the driver holds its lock: nothing is ingested meanwhile

    liveness = Liveness(timeout=0.5, tick=0.05)
    with ChannelServer(key, handler, host="127.0.0.1") as server:
        client = ChannelClient(server.address, key, 0, heartbeat=0.1)
        try:
            client.send("start", {}, timeout=20)
            run = TrialRun(0, {}, state=TrialState.RUNNING, attempt=0, started=time.time(),
                           last_seen=time.time())
            client.send("report", {"step": 0}, block=False)
            assert holding.wait(20)
            ends = time.monotonic() + 4 * liveness.timeout  # held for 4 timeouts
            while time.monotonic() < ends:
                assert liveness.lost([run], server) == []
                time.sleep(0.05)
            assert liveness.ingest_lag > liveness.timeout  # it saw how far behind it was
        finally:
            held.set()
            client.close(timeout=0)  # its process gone: no heartbeat, no end
        lost: list[Any] = []
        deadline = time.monotonic() + 60
        while not lost and time.monotonic() < deadline:
            lost = liveness.lost([run], server)
            time.sleep(0.05)
        assert lost and "no heartbeat for" in lost[0][1]
        assert liveness.figures()["max"] >= 4 * liveness.timeout * 0.9
