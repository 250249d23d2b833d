"""The feed reads only the trials changed since its last poll, and misses none."""

from __future__ import annotations

import pytest

from kale_ext.search import TrialState
from kale_ext.widgets import StoreFeed
from kale_ext.widgets import _feed as feed_module
from kale_ext.widgets._updater import Updater


def test_a_transition_without_a_report_is_read(writer):
    for t in range(3):
        writer.add(t, {"lr": 0.01, "optimizer": "adam", "layers": 1})
        writer.report(t, 1, val_acc=0.1 * t)
    feed = StoreFeed.open(writer.path)
    try:
        assert [t.number for t in feed.poll().trials] == [0, 1, 2]
        writer.store.transition(1, TrialState.COMPLETED, "done")
        delta = feed.poll()
        assert [(t.number, t.state) for t in delta.trials] == [(1, TrialState.COMPLETED)]
        assert feed.poll().empty
    finally:
        feed.close()


def test_a_change_stamped_before_the_latest_seen_is_read(writer, monkeypatch):
    writer.add(0, {"lr": 0.01, "optimizer": "adam", "layers": 1})
    writer.add(1, {"lr": 0.02, "optimizer": "sgd", "layers": 2})
    feed = StoreFeed.open(writer.path)
    try:
        feed.poll()
        # A writer whose stamp lags the latest one seen, within the overlap.
        monkeypatch.setattr(feed_module, "_OVERLAP", 3600.0)
        feed._latest = (feed._latest or 0.0) + 60.0
        writer.report(0, 1, val_acc=0.5)
        assert [t.number for t in feed.poll().trials] == [0]
    finally:
        feed.close()


def test_updater_refuses_a_busy_share_out_of_range():
    with pytest.raises(ValueError, match=r"busy must be in \(0, 1\]"):
        Updater(lambda: False, busy=0.0)
