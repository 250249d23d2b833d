"""Search routes against a real search: a kale.Search runs on a local Dask cluster in
the test process, and the server reads its store and steers its driver."""

from __future__ import annotations

import asyncio
import time

import pytest

import kale_ext as kale
from tests.search import trainables


@pytest.fixture
def cluster():
    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    yield cluster
    cluster.stop()


async def _until(api, path, predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        status, data = await api("GET", *path)
        if status == 200 and predicate(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {data}")
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_search_routes_and_control_of_a_live_search(api, cluster):
    search = kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1), "epochs": 400,
                                                "sleep": 0.05},
                         metric="score", mode="max", trials=2, cluster=cluster,
                         name="api-search").start()
    try:
        trials = await _until(api, ("searches", "api-search", "trials"),
                              lambda ts: len(ts) == 2 and all(t["last"] for t in ts),
                              "two reporting trials")
        assert {t["state"] for t in trials} == {"running"}
        assert set(trials[0]["params"]) == {"x", "epochs", "sleep"}

        status, listed = await api("GET", "searches")
        assert status == 200 and [s["name"] for s in listed] == ["api-search"]
        summary = listed[0]
        assert summary["alive"] is True and summary["state"] == "running"
        assert summary["metric"] == "score" and summary["mode"] == "max"
        assert summary["planned"] == 2 and summary["trials"] == {"running": 2}
        assert summary["best"]["trial"] in (0, 1) and summary["cluster"] == cluster.id

        status, detail = await api("GET", "searches", "api-search")
        assert status == 200
        assert "fn_pickle" not in detail["definition"]
        assert detail["definition"]["fn"] == "quadratic" and detail["created"]

        # Metric history, then only what is new since the last row seen.
        status, first = await api("GET", "searches", "api-search", "trials", "0", "metrics")
        assert status == 200 and first["since"] == 0 and first["rows"]
        assert all(r["trial"] == 0 and "score" in r["values"] for r in first["rows"])
        last = first["last_rowid"]
        assert last == first["rows"][-1]["rowid"]
        await asyncio.sleep(0.3)
        status, more = await api("GET", "searches", "api-search", "trials", "0", "metrics",
                                 params={"since": str(last)})
        assert status == 200 and more["since"] == last
        assert all(r["rowid"] > last for r in more["rows"])
        assert more["last_rowid"] >= last

        # Every trial's history of the search's metric in one answer.
        status, both = await api("GET", "searches", "api-search", "metrics")
        assert status == 200 and both["metric"] == "score" and both["more"] is False
        assert {r["trial"] for r in both["rows"]} == {0, 1}
        assert all(isinstance(r["value"], float) for r in both["rows"])

        status, data = await api("GET", "searches", "api-search", "trials", "7", "metrics")
        assert status == 404 and "no trial 7" in data["message"]
        status, data = await api("GET", "searches", "api-search", "trials", "0", "metrics",
                                 params={"since": "abc"})
        assert status == 400 and "'since'" in data["message"]

        # Control: stop trial 0 through the driver's channel.
        status, answer = await api("POST", "searches", "api-search", "control",
                                   body={"action": "stop", "trial": 0})
        assert status == 200, answer
        assert answer == {"name": "api-search", "action": "stop", "trial": 0,
                          "message": "stop trial 0: done"}
        await _until(api, ("searches", "api-search", "trials"),
                     lambda ts: ts[0]["state"] == "stopped", "trial 0 stopped")

        # The driver refuses what the trial's state forbids: 409 with its reason.
        status, data = await api("POST", "searches", "api-search", "control",
                                 body={"action": "resume", "trial": 0})
        assert status == 409 and "not paused" in data["message"]

        for body, words in [({"action": "explode"}, ["'action'", "stop, pause, resume"]),
                            ({"action": "restart"}, ["needs field 'trial'"]),
                            ({"action": "stop", "trial": -1}, ["'trial'", ">= 0"]),
                            ({"action": "stop", "params": {"x": 1}}, ["only for action"]),
                            ({"action": "stop", "what": 1}, ["'what'"])]:
            status, data = await api("POST", "searches", "api-search", "control", body=body)
            assert status == 400, (body, data)
            assert all(w in data["message"] for w in words), (words, data["message"])

        status, answer = await api("POST", "searches", "api-search", "control",
                                   body={"action": "stop", "trial": None})
        assert status == 200 and answer["message"] == "stop search api-search: done"
        await asyncio.get_running_loop().run_in_executor(None, search.wait, 60)
    finally:
        if search.running:
            search.stop()
            search.wait(60)

    summary = await _until(api, ("searches",), lambda ss: not ss[0]["alive"], "driver gone")
    assert summary[0]["state"] == "stopped"
    assert summary[0]["trials"] == {"stopped": 2}
    # No live driver: control is refused with the reason and the way out.
    status, data = await api("POST", "searches", "api-search", "control",
                             body={"action": "stop", "trial": 1})
    assert status == 409
    assert "no running driver" in data["message"]
    assert "kale search resume api-search" in data["message"]
