"""Per-rank curves of a distributed training run: loss and samples/s per rank.

Built over stored metric rows (``rank`` set per row), so it shows a run from its live
handle, its store, or after a kernel restart alike.
"""

from __future__ import annotations

import dataclasses
import html
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_ext.trial import open_store
from kale_ext.widgets._bokeh import (
    RESYNC_AFTER,
    close_widgets,
    load_bokehjs,
    refresh_bundles,
    require,
)
from kale_ext.widgets._curves import CurvesView
from kale_ext.widgets._model import Curve, add_rows
from kale_ext.widgets._updater import Updater

if TYPE_CHECKING:
    from kale_ext.store import MetricRow, Store

RATE = "samples/s"
_RATE_KEYS = ("samples_per_sec", "samples_per_s", "samples_per_second", "throughput")


def _open(source: Any) -> tuple[Store, bool]:
    from kale_ext.store import Store

    if isinstance(source, Store):
        return source, False
    path = getattr(source, "store_path", source)
    if isinstance(path, str | os.PathLike):
        return open_store(Path(path).expanduser(), readonly=True), True
    raise TypeError(f"DistributedRunPanel needs a run handle (with .store_path), a Store or "
                    f"a store path, but got {source!r}.")


class DistributedRunPanel:
    """Loss (or any metric) and samples/s per rank of a distributed run, live.

    Parameters
    ----------
    source
        The run handle (anything with ``store_path``), a :class:`kale_ext.store.Store`,
        or a store path.
    trial
        Which trial's ranks to show (a distributed trial of a search); default: all rows.
    metric
        The metric plotted per rank first.
    interval
        Seconds between updates.
    """

    def __init__(self, source: Any, *, trial: int | None = None, metric: str = "loss",
                 interval: float = 0.5) -> None:
        widgets = require("ipywidgets")
        self.store, self._owned = _open(source)
        self.trial = trial
        self.rowid = 0
        self.lock = threading.RLock()
        self.curves: dict[int, Curve] = {}
        self._last: dict[int, tuple[int, float, float]] = {}  # rank -> attempt, time, samples
        self.metrics: list[str] = []
        self.loss = CurvesView(self.curves, key_label="rank", metric=metric,
                               title="per-rank curves")
        self.rate = CurvesView(self.curves, key_label="rank", metric=RATE,
                               title="samples/s per rank")
        self.rate.picker.layout.display = "none"
        self.summary = widgets.HTML()
        self.widget = widgets.VBox([self.summary, self.loss.widget, self.rate.widget])
        self._tick()
        self.updater = Updater(self._tick, interval=interval, name="kale-run").start()

    def _with_rate(self, row: MetricRow) -> MetricRow:
        """Return the row with ``samples/s``.

        The rate is reported directly, or computed from a running ``samples`` count over
        the time since the rank's previous row.
        """
        values = row.values
        rate = next((values[k] for k in _RATE_KEYS if isinstance(values.get(k), int | float)),
                    None)
        samples = values.get("samples")
        if isinstance(samples, int | float):
            prev = self._last.get(row.rank)
            if rate is None and prev is not None and prev[0] == row.attempt \
                    and row.time > prev[1]:
                rate = (samples - prev[2]) / (row.time - prev[1])
            self._last[row.rank] = (row.attempt, row.time, float(samples))
        if rate is None:
            return row
        return dataclasses.replace(row, values={**values, RATE: float(rate)})

    def _tick(self) -> bool:
        rows = self.store.metrics(self.trial, since_rowid=self.rowid)
        if not rows:
            self.loss.flush_markers()  # the markers of the last reports, a moment late
            self.rate.flush_markers()
            return True
        self.rowid = rows[-1].rowid
        with self.lock:
            touched = add_rows(self.curves, [self._with_rate(r) for r in rows], "rank")
            names = sorted({n for c in self.curves.values() for n in c.values})
            if names != self.metrics:
                self.metrics = names
                self.loss.set_metrics([n for n in names if n != RATE])
            self.loss.update(touched)
            self.rate.update(touched)
            self.summary.value = html.escape(self.describe())
        return True

    def describe(self) -> str:
        """Ranks, latest step and the summed samples/s of the latest rows."""
        ranks = sorted(self.curves)
        if not ranks:
            return "no reports yet"
        step = max((c.x[-1] for c in self.curves.values() if c.x), default=0)
        total = sum(c.values[RATE][-1] for c in self.curves.values()
                    if c.values.get(RATE) and c.values[RATE][-1] == c.values[RATE][-1])
        text = f"{len(ranks)} ranks | step {step:g}"
        return text + (f" | {total:.4g} samples/s in all" if total else "")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        load_bokehjs()
        with self.lock:
            refresh_bundles([self.loss.plot, self.rate.plot])
        display(self.widget)
        threading.Timer(RESYNC_AFTER, self._resync).start()

    def _resync(self) -> None:
        with self.lock:
            self.loss.redraw()
            self.rate.redraw()

    def close(self) -> None:
        self.updater.stop()
        close_widgets([self.widget], [self.loss.plot, self.rate.plot])
        if self._owned:
            self.store.close()
