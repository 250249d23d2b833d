"""Where a search trial's launch went: kept in the store, shown in results() and the panel."""

from __future__ import annotations

import sqlite3

import pytest

import kale_ext as kale
from kale_ext.trial import LAUNCH_FIELDS, TrialState, launch_summary, open_store
from kale_ext.widgets._feed import StoreFeed
from kale_ext.widgets._model import TrialBook
from tests.training import trainables
from tests.training.conftest import start


def _check(row, *, first=None):
    for name in ("scheduling", "imports", "first_report"):
        value = row[f"launch_{name}"]
        assert value is not None and 0 <= value < 120, (name, row)
    if first is not None:
        assert row["launch_first_on_worker"] is first, row


def test_search_results_say_where_each_launch_went(module_state):
    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    try:
        search = kale.Search(trainables.quick_trial, {"x": kale.grid([1.0, 2.0, 3.0, 4.0,
                                                                       5.0, 6.0])},
                             metric="loss", mode="min", algorithm="grid", trials=6,
                             cluster=cluster).start()
        search.wait(180)
        frame = search.results()
    finally:
        cluster.stop()
    assert set(frame["state"]) == {"completed"}, frame
    for _, row in frame.iterrows():
        _check(row)
        assert row["launch_first_report"] >= 0.2  # the trial's first batch sleeps 0.2 s
    # The first trial in each worker process pays its imports; later ones there do not.
    firsts = frame.groupby("worker")["launch_first_on_worker"].sum()
    assert set(firsts) == {1}, frame[["trial", "worker", "launch_first_on_worker"]]
    assert len(firsts) == 2
    # The panel's table shows the total and its largest part.
    feed = StoreFeed.open(search.store.path)
    book = TrialBook(feed.definition, feed.created)
    book.apply(feed.poll())
    feed.close()
    assert "launch" in book.columns()
    for cell in book.frame()["launch"]:
        assert cell.endswith(")") and " s (" in cell, cell


@pytest.mark.parametrize("name", ["dask-local"])
def test_distributed_trials_keep_their_launch(name, module_state):
    cluster = start(name)
    try:
        search = kale.Search(trainables.search_trial, {"lr": kale.grid([0.1, 0.3])},
                             metric="loss", mode="min", algorithm="grid", trials=2,
                             workers_per_trial=2, cluster=cluster).start()
        search.wait(180)
        frame = search.results()
    finally:
        cluster.stop()
    assert list(frame["state"]) == ["completed", "completed"], frame
    for _, row in frame.iterrows():
        _check(row, first=False)  # ranks forked from the worker's zygote, not new Pythons


def test_the_store_keeps_the_latest_attempts_launch(tmp_path):
    path = tmp_path / "s.kale.sqlite"
    with open_store(path) as store:
        store.create_search({"name": "s"})
        store.add_trial(0, {})
        store.set_launch(0, {"scheduling": 0.5, "imports": 2.0, "first_on_worker": True},
                         merge=False)
        store.set_launch(0, {"first_report": 0.25}, merge=True)
        assert store.trial(0).launch == {"scheduling": 0.5, "imports": 2.0,
                                         "first_on_worker": True, "first_report": 0.25}
        store.transition(0, TrialState.RUNNING, "retried", attempt=1)
        store.set_launch(0, {"scheduling": 0.1, "imports": 0.01}, merge=False)
        assert store.trial(0).launch == {"scheduling": 0.1, "imports": 0.01}
        assert store.trial(0).to_dict()["launch"] == {"scheduling": 0.1, "imports": 0.01}
    assert launch_summary(open_store(path, readonly=True).trial(0).launch) == \
        "0.1 s (scheduling 0.1)"
    assert launch_summary({"scheduling": 0.1, "imports": 2.3, "first_report": 0.5,
                           "first_on_worker": True}) == "2.9 s (imports 2.3, first)"
    assert launch_summary({}) == ""
    assert set(LAUNCH_FIELDS) == {"scheduling", "imports", "first_report", "first_on_worker"}


def test_a_store_from_before_launches_reads_and_gains_them(tmp_path):
    path = tmp_path / "old.kale.sqlite"
    with open_store(path) as store:
        store.create_search({"name": "old"})
        store.add_trial(0, {"x": 1})
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE trials DROP COLUMN launch")
    conn.commit()
    conn.close()
    with open_store(path, readonly=True) as old:
        assert old.trial(0).launch == {} and old.trial(0).params == {"x": 1}
    with open_store(path) as store:
        store.set_launch(0, {"imports": 1.0}, merge=True)
        assert store.trial(0).launch == {"imports": 1.0}
