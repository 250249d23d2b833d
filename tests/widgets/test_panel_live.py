"""The panel of a live search on a real local Dask cluster: buttons drive the search."""

from __future__ import annotations

import time

import pytest

import kale_ext as kale
from kale_ext.search import TrialState
from kale_ext.widgets import ClusterWidget
from tests.conftest import wait_for
from tests.widgets import trainables
from tests.widgets.conftest import SPACE


@pytest.fixture
def search(dask_cluster, tmp_path):
    s = kale.Search(trainables.slow_curve, {**SPACE.spec, "epochs": 60, "sleep": 0.05},
                    metric="val_acc", trials=3, max_concurrent=2, cluster=dask_cluster,
                    store=tmp_path / "live.kale.sqlite", seed=3).start()
    yield s
    if s.running:
        s.stop()
    s.wait(60)


def _running(panel, n):
    frame = panel.table.frame()
    return bool((frame["status"] == "running").sum() >= n and
                (frame["epoch"] >= 2).sum() >= n)


def test_buttons_stop_pause_resume_and_restart_selected_trials(search):
    panel = search.panel(interval=0.05)
    try:
        wait_for(lambda: _running(panel, 2), what="two running trials in the table")
        # No trial selected: the trial buttons wait for one, the search's act at once.
        buttons = panel.controls.buttons
        assert all(buttons[n].disabled for n in ("stop", "pause", "resume", "restart"))
        assert not any(buttons[n].disabled
                       for n in ("stop_search", "pause_search", "resume_search"))
        # Stop trial 0 from its selected row.
        panel.table.select_trials([0])
        panel.controls.buttons["stop"].click()
        assert "stop: asked trial(s) 0" in panel.controls.message.value
        wait_for(lambda: search.runs[0].state is TrialState.STOPPED, what="trial 0 stopped")
        wait_for(lambda: panel.table.frame().loc[0, "status"] == "stopped", what="stopped row")
        # Pause and resume trial 1.
        panel.table.select_trials([1])
        panel.controls.buttons["pause"].click()
        wait_for(lambda: search.runs[1].state is TrialState.PAUSED, what="trial 1 paused")
        wait_for(lambda: panel.table.frame().loc[1, "status"] == "paused", what="paused row")
        panel.controls.buttons["resume"].click()
        wait_for(lambda: search.runs[1].state is TrialState.RUNNING, what="trial 1 resumed")
        # Stopping a stopped trial is refused with the search's own error.
        panel.table.select_trials([0])
        panel.controls.buttons["stop"].click()
        assert "trial 0: Trial 0 is stopped" in panel.controls.message.value
        # An out-of-range edit is refused before anything is restarted.
        editor = panel.controls.editor
        editor.fields["lr"].value = 7.0
        panel.controls.buttons["restart"].click()
        assert "not restarted" in panel.controls.message.value
        assert "lr" in panel.controls.message.value
        # A valid edit restarts trial 0 with it.
        editor.fields["lr"].value = 0.5
        editor.fields["optimizer"].value = "sgd"
        panel.controls.buttons["restart"].click()
        assert "restart with lr=0.5, optimizer=&#x27;sgd&#x27;" in panel.controls.message.value
        wait_for(lambda: search.runs[0].config["lr"] == 0.5
                 and search.runs[0].state is TrialState.RUNNING, what="trial 0 restarted")
        wait_for(lambda: panel.table.frame().loc[0, "lr"] == 0.5, what="edited row")
        # The whole search: stop.
        panel.controls.buttons["stop_search"].click()
        search.wait(60)
        wait_for(lambda: panel.book.state == "stopped", what="search stopped in the panel")
        panel._tick()
        # The search ended: nothing is left to steer, a trial still selected or not.
        assert panel.table.selected
        assert all(b.disabled for b in buttons.values()), \
            {n: b.disabled for n, b in buttons.items()}
        table = panel.table.frame()
        results = search.results().set_index("trial")
        assert list(table.index) == list(results.index)
        assert list(table["status"]) == list(results["state"])
        assert list(table["epoch"]) == list(results["epoch"])
        assert list(table["val_acc"]) == pytest.approx(list(results["val_acc"]))
        assert panel.ui_cpu_seconds > 0 and panel.updater.error is None
    finally:
        panel.close()


def test_resources_sampled_on_workers_and_trials_placed(search, dask_cluster):
    panel = search.panel(interval=0.05)
    try:
        assert panel.monitor is not None
        panel.monitor.interval = 0.3
        wait_for(lambda: _running(panel, 2), what="two running trials")
        samples = wait_for(lambda: panel.monitor.samples, what="resource samples")
        assert set(samples) == {w.name for w in dask_cluster.status().workers}
        for s in samples.values():
            assert 0 <= s["cpu"] <= 100 and 0 < s["memory"] <= 100 and s["rss"] > 0
            assert s["gpus"] == []  # no GPU on this machine
        wait_for(lambda: len(panel.resources.sources) == 2, what="a plot line per worker")
        wait_for(lambda: sum(len(v) for v in panel.resources.trials_by_worker.values()) == 2,
                 what="trials placed on workers")
        assert set(panel.resources.trials_by_worker) <= set(samples)
        assert "running trials" in panel.resources.table.value
    finally:
        panel.close()


def test_resumed_search_panel_shows_the_stored_history(search, dask_cluster):
    wait_for(lambda: _search_epochs(search) >= 3, what="reports")
    search.stop()
    search.wait(60)
    history = search.results().set_index("trial")
    search.store.close()  # as a kernel restart would
    resumed = kale.Search.resume(search.store_path, cluster=dask_cluster, start=False)
    panel = resumed.panel(resources=False)
    try:
        table = panel.table.frame()
        assert list(table.index) == list(history.index)
        assert list(table["epoch"]) == list(history["epoch"])
        assert len(panel.curves.line(0)[0]) == int(history.loc[0, "epoch"])
    finally:
        panel.close()
        resumed.store.close()


def _search_epochs(search):
    return max((r.last_step for r in search.runs.values()), default=0)


def test_cluster_widget_scales_and_stops(module_state):
    cluster = kale.start_cluster(kind="local", backend="dask", workers=1)
    widget = ClusterWidget(cluster, interval=0.2)
    try:
        assert cluster.id in widget.view.value and "1 worker," in widget.view.value
        widget.workers.value = 2
        widget.scale_button.click()
        assert "asked for 2 workers" in widget.message.value
        wait_for(lambda: "2 workers" in widget.view.value, what="2 workers shown")
        widget.stop_button.click()
        assert widget.stopped and widget.scale_button.disabled
        assert "stopped cluster" in widget.message.value
    finally:
        widget.close()
        if not widget.stopped:
            cluster.stop()


def test_cluster_widget_reads_stopped_after_cluster_stop_and_a_new_cluster_reads_running(
        module_state):
    """Run All twice: the first cluster stopped by code (not by its widget) says
    "stopped" with its controls disabled and its updates ended; the second cluster's
    widget shows that cluster running, with no error."""
    first = kale.start_cluster(kind="local", backend="dask", workers=1)
    old = ClusterWidget(first, interval=0.2)
    first.stop()
    wait_for(lambda: old.stopped, what="the stopped cluster read as stopped")
    assert "stopped" in old.view.value and "unreachable" not in old.view.value
    assert "NoneType" not in old.view.value + old.message.value
    assert old.scale_button.disabled and old.stop_button.disabled and old.workers.disabled
    wait_for(lambda: not old.updater.alive, what="the stopped cluster's updates ended")
    second = kale.start_cluster(kind="local", backend="dask", workers=1)
    new = ClusterWidget(second, interval=0.2)
    try:
        time.sleep(0.6)
        assert "running" in new.view.value and "1 worker," in new.view.value
        assert "stops" in new.view.value  # the idle timeout, with the time left
        assert not new.stop_button.disabled and not new.message.value
    finally:
        new.close()
        second.stop()


def test_a_cluster_being_stopped_reads_stopping_never_unreachable(module_state):
    """While ``cluster.stop()`` runs (its client closed, the daemon still exiting, the
    record not yet dropped), the widget, updating fast on its own thread, says
    "stopping", then "stopped": never "unreachable" or the closed client's error."""
    cluster = kale.start_cluster(kind="local", backend="dask", workers=1)
    widget = ClusterWidget(cluster, interval=0.05)
    seen: list[str] = []
    widget.view.observe(lambda change: seen.append(change["new"]), names="value")
    widget.message.observe(lambda change: seen.append(change["new"]), names="value")
    try:
        cluster.stop()
        wait_for(lambda: widget.stopped, what="the stopped cluster read as stopped")
    finally:
        widget.close()
    shown = "\n".join(seen)
    assert "unreachable" not in shown and "NoneType" not in shown, shown
    assert "status unavailable" not in shown, shown
    assert "stopping" in shown, shown  # the stop was seen under way
    assert "stopped" in widget.view.value
