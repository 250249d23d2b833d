"""A panel over many trials draws a bounded set of lines, says what it left out, draws more."""

from __future__ import annotations

import pytest

from kale_ext.search import TrialState
from kale_ext.widgets import SearchPanel, StoreFeed, TrialBook
from kale_ext.widgets import _panel as panel_module


def _fill(writer, trials=8, running=(6, 7)):
    """Trial t reports val_acc 0.1 * epoch * (t + 1): a higher number is a better trial."""
    for t in range(trials):
        writer.add(t, {"lr": 0.01 * (t + 1), "optimizer": "adam", "layers": 1 + t % 4})
        for e in range(1, 5):
            writer.report(t, e, val_acc=0.1 * e * (t + 1))
        if t not in running:
            writer.store.transition(t, TrialState.COMPLETED, "done")


@pytest.fixture
def small_limits(monkeypatch):
    # The panel's module constants, set small so a few trials exceed them.
    monkeypatch.setattr(panel_module, "CURVES_DRAWN", 3)
    monkeypatch.setattr(panel_module, "PARALLEL_DRAWN", 2)


def test_ranked_puts_running_trials_first_then_the_best(writer):
    _fill(writer)
    feed = StoreFeed.open(writer.path)
    book = TrialBook(feed.definition, feed.created)
    book.apply(feed.poll())
    feed.close()
    assert book.ranked() == [6, 7, 5, 4, 3, 2, 1, 0]


def test_curves_draw_running_and_best_note_the_rest_and_draw_more(writer, small_limits):
    _fill(writer)
    panel = SearchPanel(writer.path)
    try:
        curves = panel.curves
        assert sorted(curves.source.data["key"]) == [5, 6, 7]
        assert sorted(set(curves.points.data["key"])) == [5, 6, 7]  # markers of drawn lines
        assert sorted(curves.ends.data["label"]) == ["t5", "t6", "t7"]
        assert curves.note.value == ("3 of 8 trials drawn: the selected, the running, "
                                     "then the best; 5 not drawn")
        assert curves.more.layout.display is None  # the button shows

        panel.table.select_trials([0])  # a selected trial is drawn, whatever its rank
        assert sorted(curves.source.data["key"]) == [0, 5, 6, 7]
        assert curves.line(0)[1] == pytest.approx([0.1, 0.2, 0.3, 0.4])
        panel.table.select_trials([])  # deselected: it gives way again
        assert sorted(curves.source.data["key"]) == [5, 6, 7]
        panel.table.select_trials([0])

        curves.more.click()  # three more: 4, 3, 2
        assert sorted(curves.source.data["key"]) == [0, 2, 3, 4, 5, 6, 7]
        assert curves.note.value.endswith("; 1 not drawn")
        curves.more.click()
        assert sorted(curves.source.data["key"]) == list(range(8))
        assert curves.note.value == "" and curves.more.layout.display == "none"
    finally:
        panel.close()


def test_curves_give_way_when_a_drawn_trial_ends(writer, small_limits):
    _fill(writer)
    panel = SearchPanel(writer.path)
    try:
        assert sorted(panel.curves.source.data["key"]) == [5, 6, 7]
        writer.store.transition(6, TrialState.COMPLETED, "done")  # 7 runs, 6 is second best
        writer.add(8, {"lr": 0.001, "optimizer": "sgd", "layers": 1})
        writer.report(8, 1, val_acc=0.01)
        panel.curves.rechoose()  # as the panel's thread does each second
        panel._tick()
        panel.curves.rechoose()
        assert sorted(panel.curves.source.data["key"]) == [6, 7, 8]  # running 7, 8; best 6
    finally:
        panel.close()


def test_parallel_draws_the_best_and_the_selected(writer, small_limits):
    _fill(writer)
    panel = SearchPanel(writer.path)
    try:
        parallel = panel.parallel
        parallel.update()
        assert parallel.source.data["trial"] == [6, 7]
        assert parallel.note.value == ("2 of 8 scored trials drawn: the best by val_acc and "
                                       "the selected; 6 not drawn")
        panel.table.select_trials([1])
        assert parallel.source.data["trial"] == [1, 6, 7]
        parallel.more.click()
        assert parallel.source.data["trial"] == [1, 4, 5, 6, 7]
    finally:
        panel.close()


def test_few_trials_are_all_drawn_with_no_note(writer):
    _fill(writer, trials=3, running=())
    panel = SearchPanel(writer.path)
    try:
        panel.parallel.update()
        assert sorted(panel.curves.source.data["key"]) == [0, 1, 2]
        assert panel.parallel.source.data["trial"] == [0, 1, 2]
        assert panel.curves.note.value == panel.parallel.note.value == ""
        assert panel.curves.more.layout.display == "none"
    finally:
        panel.close()


def test_a_limit_below_one_is_refused(writer):
    from kale_ext.widgets._curves import CurvesView

    with pytest.raises(ValueError, match="limit must be a whole number >= 1"):
        CurvesView({}, limit=0)
