"""Migrations in the results table and the panel's trial table (real store, no cluster)."""

from __future__ import annotations

from kale_ext.search import TrialState, migrations
from kale_ext.search._results import results_frame
from kale_ext.widgets import StoreFeed, TrialBook


def test_a_migrated_trial_shows_its_moves(writer):
    for t in range(2):
        writer.add(t, {"lr": 0.1, "optimizer": "adam", "layers": 1}, worker=f"w{t}")
        writer.store.transition(t, TrialState.RUNNING, "attempt 1 submitted", attempt=1)
        writer.report(t, 1, attempt=1, val_acc=0.5)
    feed = StoreFeed.open(writer.path)
    book = TrialBook(feed.definition, feed.created)
    book.apply(feed.poll())
    assert "moves" not in book.columns()  # no trial moved: no column

    store = writer.store
    store.transition(0, TrialState.PENDING, "migrated from w0: retires in 12 s")
    store.transition(0, TrialState.RUNNING, "attempt 2 submitted", attempt=2)
    store.transition(0, TrialState.RUNNING, "started on w2", worker="w2")
    writer.report(0, 2, attempt=2, val_acc=0.6)
    change = book.apply(feed.poll())
    assert change.columns and book.columns()[-3:] == ["worker", "moves", "launch"]
    frame = book.frame()
    assert list(frame["moves"]) == [1, 0] and frame.loc[0, "worker"] == "w2"
    feed.close()

    assert migrations(store) == {0: 1}
    results = results_frame(store, "val_acc", "max")
    assert list(results["migrations"]) == [1, 0] and list(results["retries"]) == [0, 0]
