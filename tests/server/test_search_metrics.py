"""``GET kale/api/searches/<name>/metrics``: one metric of every trial, incrementally,
over a real SQLite store written through the store API and registered like a search."""

from __future__ import annotations

import time

import pytest

from kale_ext import registry
from kale_ext.channel import Message
from kale_ext.server._manager import MAX_METRIC_ROWS
from kale_ext.store import Store

DEFINITION = {"name": "stored", "fn": "train:train", "space": {"x": {"kind": "uniform"}},
              "metric": "val_acc", "mode": "max", "algorithm": "random", "trials": 2}


def report(trial: int, seq: int, *, attempt: int = 0, rank: int = 0, **values: float) -> Message:
    return Message(trial, attempt, rank, seq, "report", 1000.0 + seq, values)


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "stored.kale.sqlite"
    with Store.open(path) as store:
        store.create_search(DEFINITION)
        store.add_trial(0, {"x": 0.1})
        store.add_trial(1, {"x": 0.9})
        registry.write("searches", "stored", {"name": "stored", "store": str(path),
                                              "cluster": None, "started": time.time()})
        yield store


def _ids(store: Store) -> list[int]:
    return [r.rowid for r in store.metrics()]


async def test_one_metric_of_every_trial_then_only_what_is_new(api, store):
    store.append([Message(0, 0, 0, 0, "start", 999.0, {"hostname": "n1"}),
                  report(0, 1, epoch=1, val_acc=0.5, loss=1.0),
                  report(1, 0, epoch=1, val_acc=0.6, loss=0.9),
                  report(0, 2, epoch=2, val_acc=float("nan"), loss=0.8),  # no point
                  report(0, 0, rank=1, epoch=1, val_acc=0.99),  # rank 1: no point
                  report(1, 1, epoch=2, val_acc=0.7, loss=0.5),
                  report(0, 3, loss=0.4)])  # no val_acc: no point, but seen
    ids = _ids(store)
    status, data = await api("GET", "searches", "stored", "metrics")
    assert status == 200, data
    assert data == {"metric": "val_acc", "since": 0, "more": False, "last_rowid": ids[-1],
                    "rows": [{"rowid": ids[0], "trial": 0, "attempt": 0, "step": 1, "value": 0.5},
                             {"rowid": ids[1], "trial": 1, "attempt": 0, "step": 1, "value": 0.6},
                             {"rowid": ids[4], "trial": 1, "attempt": 0, "step": 2,
                              "value": 0.7}]}

    status, loss = await api("GET", "searches", "stored", "metrics", params={"metric": "loss"})
    assert status == 200 and loss["metric"] == "loss"
    assert [(r["trial"], r["value"]) for r in loss["rows"]] == [
        (0, 1.0), (1, 0.9), (0, 0.8), (1, 0.5), (0, 0.4)]

    # Nothing new: the same `since` comes back, no rows.
    since = data["last_rowid"]
    assert await api("GET", "searches", "stored", "metrics", params={"since": str(since)}) == (
        200, {"metric": "val_acc", "since": since, "more": False, "last_rowid": since,
              "rows": []})

    # A restarted trial 0 (attempt 1) reports: only its rows are new.
    store.append([report(0, 0, attempt=1, epoch=3, val_acc=0.8)])
    status, new = await api("GET", "searches", "stored", "metrics", params={"since": str(since)})
    assert status == 200 and new["last_rowid"] == _ids(store)[-1] > since
    assert [(r["trial"], r["attempt"], r["step"], r["value"]) for r in new["rows"]] == [
        (0, 1, 3, 0.8)]


async def test_rows_per_answer_are_capped_and_more_says_so(api, store):
    n = MAX_METRIC_ROWS + 3
    store.append([report(i % 2, i // 2, epoch=i // 2, val_acc=i / n) for i in range(n)])
    ids = _ids(store)
    status, first = await api("GET", "searches", "stored", "metrics")
    assert status == 200
    assert len(first["rows"]) == MAX_METRIC_ROWS and first["more"] is True
    assert first["last_rowid"] == ids[MAX_METRIC_ROWS - 1] == first["rows"][-1]["rowid"]
    status, rest = await api("GET", "searches", "stored", "metrics",
                             params={"since": str(first["last_rowid"])})
    assert status == 200 and rest["more"] is False
    assert [r["rowid"] for r in first["rows"] + rest["rows"]] == ids

    # A smaller page on request; paging by last_rowid reads every row exactly once.
    seen, since, pages = [], 0, 0
    while True:
        status, page = await api("GET", "searches", "stored", "metrics",
                                 params={"since": str(since), "limit": "2000"})
        assert status == 200 and len(page["rows"]) <= 2000
        seen += [r["rowid"] for r in page["rows"]]
        since, pages = page["last_rowid"], pages + 1
        if not page["more"]:
            break
    assert seen == ids and pages == 3


@pytest.mark.parametrize(("params", "words"), [
    ({"since": "abc"}, ["'since'", "integer row id", "since='abc'"]),
    ({"since": "-1"}, ["'since'", ">= 0", "since=-1"]),
    ({"limit": "0"}, ["'limit'", f"between 1 and {MAX_METRIC_ROWS}", "limit=0"]),
    ({"limit": str(MAX_METRIC_ROWS + 1)}, ["'limit'", f"limit={MAX_METRIC_ROWS + 1}"]),
    ({"limit": "lots"}, ["'limit'", "an integer between 1", "limit='lots'"]),
    ({"metric": ""}, ["'metric'", "metric=''", "leave it out"]),
])
async def test_bad_query_arguments_are_400_naming_value_and_rule(api, store, params, words):
    status, data = await api("GET", "searches", "stored", "metrics", params=params)
    assert status == 400, data
    for word in words:
        assert word in data["message"], (word, data["message"])


async def test_unknown_search_is_404_and_a_lost_store_410(api, tmp_path):
    status, data = await api("GET", "searches", "nope", "metrics")
    assert status == 404 and "No search 'nope'" in data["message"]
    registry.write("searches", "lost", {"name": "lost", "store": str(tmp_path / "gone.sqlite")})
    status, data = await api("GET", "searches", "lost", "metrics")
    assert status == 410 and "cannot be read" in data["message"]


async def test_trials_come_in_pages_filtered_and_best_first(api, store):
    store.append([report(0, 0, epoch=1, val_acc=0.4), report(1, 0, epoch=1, val_acc=0.8)])
    status, every = await api("GET", "searches", "stored", "trials")
    assert status == 200 and [t["number"] for t in every] == [0, 1]
    status, page = await api("GET", "searches", "stored", "trials",
                             params={"limit": "1", "offset": "1"})
    assert status == 200 and [t["number"] for t in page] == [1]
    status, best = await api("GET", "searches", "stored", "trials",
                             params={"order": "best", "limit": "1"})
    assert status == 200 and [t["number"] for t in best] == [1]
    status, pending = await api("GET", "searches", "stored", "trials",
                                params={"state": "pending"})
    assert status == 200 and len(pending) == 2
    for params, words in (({"limit": "-1"}, ["'limit'", "limit=-1"]),
                          ({"limit": "ten"}, ["'limit'", "integer"]),
                          ({"state": "asleep"}, ["'state'", "running", "asleep"]),
                          ({"order": "fastest"}, ["'order'", "best", "fastest"])):
        status, data = await api("GET", "searches", "stored", "trials", params=params)
        assert status == 400, (params, data)
        assert all(w in data["message"] for w in words), (params, data["message"])
