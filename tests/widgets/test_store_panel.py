"""The search panel over a store written through the real store API (no cluster)."""

from __future__ import annotations

import math
import sys
import threading

import pytest

from kale_ext.search import TrialState
from kale_ext.widgets import DistributedRunPanel, SearchPanel, StoreFeed, TrialBook
from kale_ext.widgets._controls import READ_ONLY
from tests.conftest import wait_for


def _fill(writer, trials=3, epochs=4):
    for t in range(trials):
        writer.add(t, {"lr": 0.01 * (t + 1), "optimizer": "adam", "layers": t + 1},
                   worker=f"w{t % 2}")
        for e in range(1, epochs + 1):
            writer.report(t, e, loss=1 / e, val_loss=1.1 / e, acc=0.1 * e,
                          val_acc=0.1 * e * (t + 1))


def test_feed_reads_only_new_rows_and_changed_trials(writer):
    _fill(writer, trials=2, epochs=3)
    feed = StoreFeed.open(writer.path)
    first = feed.poll()
    assert len(first.rows) == 6 and [t.number for t in first.trials] == [0, 1]
    assert feed.poll().empty  # nothing new
    writer.report(1, 4, val_acc=0.9)
    delta = feed.poll()
    assert [(r.trial, r.step) for r in delta.rows] == [(1, 4)]
    assert [t.number for t in delta.trials] == [1]
    feed.close()


def test_book_columns_rows_and_summary(writer):
    _fill(writer)
    feed = StoreFeed.open(writer.path)
    book = TrialBook(feed.definition, feed.created)
    change = book.apply(feed.poll())
    assert change.new_trials == [0, 1, 2] and change.columns
    assert book.columns() == ["status", "epoch", "lr", "optimizer", "layers", "loss",
                              "val_loss", "acc", "val_acc", "best_val_acc", "worker",
                              "launch"]
    frame = book.frame()
    assert list(frame.index) == [0, 1, 2]
    assert frame.loc[2, "epoch"] == 4 and frame.loc[2, "val_acc"] == pytest.approx(1.2)
    assert book.summary().startswith("3 running | best val_acc 1.2 (trial 2)")
    assert book.curves[1].series("loss") == ([1.0, 2.0, 3.0, 4.0], [1.0, 0.5, 1 / 3, 0.25])
    feed.close()


def test_restarted_attempt_replaces_the_curve(writer):
    _fill(writer, trials=1, epochs=3)
    writer.report(0, 1, attempt=1, val_acc=0.05)
    feed = StoreFeed.open(writer.path)
    book = TrialBook(feed.definition, feed.created)
    book.apply(feed.poll())
    assert book.curves[0].attempt == 1
    assert book.curves[0].series("val_acc") == ([1.0], [0.05])
    feed.close()


def test_read_only_panel_shows_history_then_live_rows(writer):
    _fill(writer)
    panel = SearchPanel(writer.path, interval=0.05)
    try:
        frame = panel.table.frame()
        assert list(frame.index) == [0, 1, 2]
        assert list(frame["status"]) == ["running"] * 3
        assert list(panel.curves.source.data["key"]) == [0, 1, 2]
        assert panel.curves.line(2)[1] == pytest.approx([0.3, 0.6, 0.9, 1.2])
        # Live: a new epoch patches the line and the row; a new trial streams a line.
        writer.report(0, 5, loss=0.1, val_loss=0.2, acc=0.5, val_acc=0.55)
        writer.add(3, {"lr": 0.5, "optimizer": "sgd", "layers": 2})
        writer.report(3, 1, loss=2.0, val_loss=2.1, acc=0.01, val_acc=0.02)
        wait_for(lambda: 3 in panel.table.frame().index
                 and panel.table.frame().loc[0, "epoch"] == 5, what="live rows in the table")
        assert panel.curves.line(0) == ([1.0, 2.0, 3.0, 4.0, 5.0],
                                        pytest.approx([0.1, 0.2, 0.3, 0.4, 0.55]))
        assert panel.curves.line(3) == ([1.0], [0.02])
        assert list(panel.curves.source.data["key"]) == [0, 1, 2, 3]  # streamed, not rebuilt
        writer.store.transition(1, TrialState.STOPPED, "stopped by the user")
        wait_for(lambda: panel.table.frame().loc[1, "status"] == "stopped", what="stopped row")
        wait_for(lambda: panel.parallel.source.data["trial"] == [0, 1, 2, 3],
                 what="parallel coordinates")
        assert "1 stopped" in panel.summary.value
        # Controls are disabled and say why.
        assert all(b.disabled for b in panel.controls.buttons.values())
        assert panel.controls.message.value == READ_ONLY
    finally:
        panel.close()
    assert not panel.updater.alive


def test_selection_highlights_curves_and_metric_picker_redraws(writer):
    _fill(writer)
    panel = SearchPanel(writer.path)
    try:
        panel.table.select_trials([1])
        assert panel.table.selected == [1]
        assert panel.table.grid.selections[0]["r1"] == 1
        assert list(panel.curves.source.data["width"]) == [1.0, 4.0, 1.0]
        assert "selected trial(s): <b>1</b>" in panel.controls.selection.value
        assert panel.controls.editor.fields["lr"].value == pytest.approx(0.02)
        assert panel.controls.editor.fields["layers"].value == 2
        assert list(panel.curves.picker.options) == ["loss", "val_loss", "acc", "val_acc"]
        panel.curves.picker.value = "loss"
        assert panel.curves.line(0)[1] == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
        # A reload (new trial) keeps the selection by trial number.
        writer.add(3, {"lr": 0.5, "optimizer": "sgd", "layers": 2})
        panel._tick()
        assert panel.table.selected == [1]
        panel.controls.buttons["stop"].click()  # read-only: refused with the reason
        assert "Read-only" in panel.controls.message.value
    finally:
        panel.close()


def test_distributed_run_panel_per_rank_curves_and_rate(writer):
    writer.add(0, {"lr": 0.1, "optimizer": "adam", "layers": 1})
    for rank in range(3):
        for step in range(1, 4):
            writer.report(0, step, rank=rank, loss=1.0 / (step + rank), samples=100 * step,
                          **({"samples_per_sec": 250.0} if rank == 2 else {}))
    panel = DistributedRunPanel(writer.path, trial=0, interval=0.05)
    try:
        assert sorted(panel.curves) == [0, 1, 2]
        assert panel.loss.line(1) == ([1.0, 2.0, 3.0], pytest.approx([0.5, 1 / 3, 0.25]))
        xs, rates = panel.rate.line(2)
        assert xs == [1.0, 2.0, 3.0] and rates == [250.0, 250.0, 250.0]
        xs, rates = panel.rate.line(0)  # derived from the samples count over time
        assert xs == [2.0, 3.0] and all(r > 0 and math.isfinite(r) for r in rates)
        assert panel.describe().startswith("3 ranks | step 3")
        writer.report(0, 4, rank=1, loss=0.1, samples=400)
        wait_for(lambda: panel.loss.line(1)[0] == [1.0, 2.0, 3.0, 4.0], what="rank 1 step 4")
    finally:
        panel.close()


def test_every_report_is_a_marker_lines_are_labelled_and_pruned_ones_can_hide(writer):
    writer.add(0, {"lr": 0.01, "optimizer": "adam", "layers": 1})
    for epoch in (1, 2, 3):
        writer.report(0, epoch, val_acc=0.1 * epoch)
    writer.add(1, {"lr": 0.5, "optimizer": "sgd", "layers": 2})
    writer.report(1, 1, val_acc=0.05)  # one point: pruned at the first rung
    writer.store.transition(1, TrialState.PRUNED, "pruned at rung 1")
    panel = SearchPanel(writer.path)
    try:
        curves = panel.curves
        assert curves.points.data["key"] == [0, 0, 0, 1]  # the pruned trial is a point
        assert curves.ends.data["label"] == ["t0", "t1"]
        assert curves.ends.data["x"] == [3.0, 1.0]
        curves.hide.value = True
        assert list(curves.source.data["key"]) == [0] and curves.points.data["key"] == [0, 0, 0]
        curves.hide.value = False
        assert list(curves.source.data["key"]) == [0, 1]
    finally:
        panel.close()


def test_trial_buttons_need_a_selection_and_a_running_search(writer):
    from kale_ext.widgets._controls import Controls

    class Table:  # what the controls read of the trial table
        selected: list[int] = []

        def on_select(self, callback):
            self.callback = callback

    table = Table()
    controls = Controls(object(), table, None, lambda n: {})  # a live search
    trial, whole = controls.buttons["stop"], controls.buttons["stop_search"]
    assert trial.disabled and not whole.disabled  # nothing selected yet
    table.selected = [0]
    table.callback([0])
    assert not trial.disabled and not controls.buttons["restart"].disabled
    controls.set_live(False)  # the search ended
    assert all(b.disabled for b in controls.buttons.values())
    assert controls.buttons["restart"].layout.width == "auto"  # its label is not cut


def test_parallel_axes_carry_their_values_on_their_own_scales(writer):
    from kale_ext.widgets._parallel import _draw

    for t, lr in enumerate((1e-5, 1e-4, 1e-3)):  # three decades: a log axis
        writer.add(t, {"lr": lr, "optimizer": ("adam", "sgd", "adam")[t], "layers": 2})
        writer.report(t, 1, val_acc=0.2 * (t + 1))
    feed = StoreFeed.open(writer.path)
    book = TrialBook(feed.definition, feed.created)
    book.apply(feed.poll())
    lines, ticks = _draw(book)
    feed.close()
    axes = [*book.param_names, book.best_column]
    by_axis = {axes[x]: [] for x in ticks["x"]}
    for x, y, text in zip(ticks["x"], ticks["y"], ticks["text"], strict=True):
        by_axis[axes[x]].append((y, text))
    assert by_axis["lr"] == [(0.0, "1e-5"), (0.5, "1e-4"), (1.0, "0.001")]
    assert by_axis["optimizer"] == [(0.0, "adam"), (1.0, "sgd")]
    assert by_axis["layers"] == [(0.5, "2")]
    assert by_axis["best_val_acc"] == [(0.0, "0.2"), (0.5, "0.4"), (1.0, "0.6")]
    assert [ys[0] for ys in lines["ys"]] == pytest.approx([0.0, 0.5, 1.0])  # log spaced


def test_selecting_while_the_panel_updates_never_deadlocks(writer):
    """A selection runs the panel's callbacks while the table's lock is held, and an
    update takes the table's lock under the panel's: one lock for both, or they deadlock
    (a kernel hung in a notebook that clicked a row while trials reported)."""
    _fill(writer)
    panel = SearchPanel(writer.path, interval=0.01)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: the interleaving that deadlocked
    done = threading.Event()

    def select():
        for i in range(300):
            panel.table.select_trials([i % 3])
        done.set()

    try:
        selector = threading.Thread(target=select, daemon=True)
        selector.start()
        for epoch in range(5, 305):
            writer.report(epoch % 3, epoch, loss=1 / epoch, val_loss=1 / epoch, acc=0.5,
                          val_acc=epoch / 1000)
            panel._tick()
            if done.is_set():
                break
        assert done.wait(30), "selecting trials while the panel updated deadlocked"
    finally:
        sys.setswitchinterval(previous)
    panel.close()
