"""``search.panel()``: the live control panel of a hyperparameter search."""

from __future__ import annotations

import collections
import html
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_ext.trial import TrialState
from kale_ext.widgets._bokeh import (
    RESYNC_AFTER,
    close_widgets,
    load_bokehjs,
    refresh_bundles,
    require,
)
from kale_ext.widgets._controls import Controls
from kale_ext.widgets._curves import CurvesView
from kale_ext.widgets._feed import StoreFeed
from kale_ext.widgets._model import TrialBook
from kale_ext.widgets._parallel import ParallelView
from kale_ext.widgets._resources import ResourceMonitor, ResourcesView
from kale_ext.widgets._table import TrialTable
from kale_ext.widgets._updater import Updater

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster
    from kale_ext.search import Search

_PARALLEL_EVERY = 1.0  # seconds between parallel-coordinates redraws (a whole redraw)
# Lines drawn at first in the learning curves and the parallel coordinates; each view has
# a button for more. Thousands of lines cost seconds to send and draw, and are unreadable.
CURVES_DRAWN, PARALLEL_DRAWN = 100, 200
_FINAL_STATES = ("completed", "stopped", "failed")
_BUSY = 0.3  # the largest share of a core the panel's thread spends updating


class SearchPanel:
    """Live table, learning curves, parallel coordinates, resources and controls of a search.

    Parameters
    ----------
    search
        A live :class:`kale_ext.Search` (controls enabled), or the path of a search store
        (a read-only view: full history, live updates while another kernel runs it).
    cluster
        Where to sample worker resources; default: the search's cluster, if it has one.
    interval
        Least seconds between updates, whatever the report rate; updates take at most
        a third of a core, so they come less often when each takes long (a big search),
        and leave the cores to the trials, the kernel and the browser drawing the page.
    resources
        Sample and plot per-worker CPU, memory and GPU.
    """

    def __init__(self, search: Search | str | os.PathLike[str], *,
                 cluster: Cluster | None = None, interval: float = 0.2,
                 resources: bool = True) -> None:
        widgets = require("ipywidgets")
        if isinstance(search, str | os.PathLike):
            self.search: Search | None = None
            self.feed = StoreFeed.open(Path(search).expanduser())
        else:
            self.search = search
            self.feed = StoreFeed.open(search.store_path)
            cluster = cluster if cluster is not None else getattr(search, "_cluster", None)
        self.lock = threading.RLock()
        self.book = TrialBook(self.feed.definition, self.feed.created)
        self.applied: collections.deque[tuple[int, float]] = collections.deque(maxlen=100_000)
        self._parallel_drawn = 0.0
        self._parallel_dirty = False
        self._resync_at = 0.0

        self.title = widgets.HTML(f"<b>kale search {html.escape(self.feed.name)}</b> "
                                  f"&middot; {html.escape(self.book.metric)} "
                                  f"({self.book.mode})")
        self.summary = widgets.HTML("")
        self.status = widgets.HTML("")
        self.table = TrialTable(self.book.frame(), lock=self.lock)
        self.curves = CurvesView(self.book.curves, metric=self.book.metric,
                                 title="learning curves", hideable=self._pruned,
                                 limit=CURVES_DRAWN, ranked=self.book.ranked,
                                 ranked_label="the selected, the running, then the best")
        self.parallel = ParallelView(self.book, limit=PARALLEL_DRAWN)
        self.controls = Controls(self.search, self.table, self.book.space, self._config_of,
                                 after=self.refresh)
        self.table.on_select(self.curves.highlight)
        self.table.on_select(self._select_parallel)
        self.resources = ResourcesView()
        self.monitor: ResourceMonitor | None = None
        if resources and cluster is not None:
            self.monitor = ResourceMonitor(cluster)
            self.monitor.on_sample(self.resources.show)
        else:
            self.resources.message.value = "No cluster to sample: pass cluster=... to see " \
                                           "worker resources."
        tabs = widgets.Tab([self.curves.widget, self.parallel.widget, self.resources.widget],
                           titles=("Learning curves", "Parameters", "Resources"))
        self.widget = widgets.VBox([self.title, self.summary, self.table.widget,
                                    self.controls.widget, tabs, self.status])
        self._tick()  # the stored history, before the first display
        self.updater = Updater(self._tick, interval=interval, busy=_BUSY,
                               name=f"kale-panel-{self.feed.name}").start()
        if self.monitor is not None:
            self.monitor.start()

    # -- updates -------------------------------------------------------------------------

    def _tick(self) -> bool:
        """Apply one batch from the store; False once nothing more will change."""
        delta = self.feed.poll()
        with self.lock:
            change = self.book.apply(delta)
            if change.new_trials or change.columns:
                self.table.reload(self.book.frame())
            elif change.rows:
                self.table.update_rows({n: self.book.row(n) for n in change.rows})
            if change.columns:
                self.curves.set_metrics(self.book.metric_names)
            if change.curves:
                self.curves.update(change.curves)
            if change.rows:
                self.curves.hide_now(change.rows)
            self.curves.flush_markers()
            self._parallel_dirty |= bool(change.rows)
            now = time.monotonic()
            if self._resync_at and now >= self._resync_at:
                self._resync_at = 0.0
                self.curves.redraw()
                self.parallel.update(force=True)
            if self._parallel_dirty and now - self._parallel_drawn > _PARALLEL_EVERY:
                self.curves.rechoose()  # drawn trials that ended may give way to others
                self.parallel.update()
                self._parallel_drawn, self._parallel_dirty = now, False
            if change.rows:
                self.resources.set_trials(self._trials_by_worker())
            summary = html.escape(self.book.summary())
            if self.summary.value != summary:
                self.summary.value = summary
            error = self.updater.error if hasattr(self, "updater") else None
            self.status.value = "" if error is None else \
                f'<span style="color:#c92a2a">update failed: {html.escape(str(error))}</span>'
            if delta.rows:
                self.applied.append((delta.last_rowid, time.time()))
        live = self.book.state not in _FINAL_STATES
        self.controls.set_live(live)
        return live or not delta.empty or self._parallel_dirty

    def refresh(self) -> None:
        """Update now rather than at the next tick (after a control action)."""
        self.updater.poke()

    def _select_parallel(self, trials: list[int]) -> None:
        with self.lock:
            self.parallel.select(trials)

    def _pruned(self, trial: int) -> bool:
        record = self.book.records.get(trial)
        return record is not None and TrialState(record.state) is TrialState.PRUNED

    def _config_of(self, trial: int) -> dict[str, Any]:
        if self.search is not None and trial in self.search.runs:
            return dict(self.search.runs[trial].config)
        return dict(self.book.records[trial].params)

    def _trials_by_worker(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for t in self.book.records.values():
            if t.state is TrialState.RUNNING and t.worker:
                out.setdefault(t.worker, []).append(t.number)
        return out

    # -- display and lifetime ------------------------------------------------------------

    @property
    def ui_cpu_seconds(self) -> float:
        """CPU time the update thread spent rendering so far."""
        return self.updater.cpu_seconds

    def _ipython_display_(self) -> None:
        from IPython.display import display

        load_bokehjs()
        with self.lock:
            refresh_bundles([self.curves.plot, self.parallel.plot, self.resources.plot])
            self._resync_at = time.monotonic() + RESYNC_AFTER
        display(self.widget)

    def close(self) -> None:
        """Stop updating and sampling, close the widgets and the store view."""
        self.updater.stop()
        if self.monitor is not None:
            self.monitor.stop()
        self._close_widgets()
        self.feed.close()

    def _close_widgets(self) -> None:
        close_widgets([self.widget, self.table.grid],
                      [self.curves.plot, self.parallel.plot, self.resources.plot])

    def __repr__(self) -> str:
        return f"<kale SearchPanel {self.feed.name!r}: {self.book.summary()}>"


def panel(source: Search | str | os.PathLike[str], **kwargs: Any) -> SearchPanel:
    """Return the live panel of a search, or a read-only one of a store path."""
    return SearchPanel(source, **kwargs)
