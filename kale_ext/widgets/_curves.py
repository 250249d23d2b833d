"""Live learning curves: one line per trial (or rank) for a chosen metric.

All lines live in one bokeh ``MultiLine`` source: a new trial's line is appended with
``ColumnDataSource.stream`` and a growing line is updated with ``patch``, so each
refresh sends at most two small document events, however many trials changed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from typing import Any

from kale_ext.widgets._bokeh import bokeh_widget, palette, require
from kale_ext.widgets._model import Curve

_NORMAL, _HIGHLIGHT, _DIM = (1.5, 0.8), (4.0, 1.0), (1.0, 0.25)


class CurvesView:
    """Learning curves of ``curves`` (key to :class:`Curve`) with a metric picker.

    Parameters
    ----------
    curves
        The live dict of curves, keyed by trial number or rank; read on update.
    key_label
        What a key is (``"trial"`` or ``"rank"``), for the legend and tooltips.
    metric
        The metric shown first.
    """

    def __init__(self, curves: dict[int, Curve], *, key_label: str = "trial",
                 metric: str = "", title: str = "", height: int = 280) -> None:
        widgets = require("ipywidgets")
        require("bokeh")
        from bokeh.models import ColumnDataSource, HoverTool
        from bokeh.plotting import figure

        self.curves = curves
        self.key_label = key_label
        self.metric = metric
        self.lock = threading.RLock()
        self.rows: dict[int, int] = {}  # key -> row of the source
        self.highlighted: set[int] = set()
        self.source = ColumnDataSource(_empty())
        self.figure = figure(height=height, sizing_mode="stretch_width", title=title,
                             x_axis_label="epoch", y_axis_label=metric,
                             tools="pan,wheel_zoom,box_zoom,reset,save")
        self.figure.multi_line("xs", "ys", source=self.source, line_color="color",
                               line_width="width", line_alpha="alpha")
        self.figure.add_tools(HoverTool(tooltips=[(key_label, "@key"), ("value", "$y")]))
        self.picker = widgets.Dropdown(description="metric", options=[metric] if metric else [],
                                       value=metric or None,
                                       layout=widgets.Layout(width="260px"))
        self.picker.observe(self._on_pick, names="value")
        self.plot = bokeh_widget(self.figure)
        self.widget = widgets.VBox([self.picker, self.plot])

    # -- updates -------------------------------------------------------------------------

    def set_metrics(self, names: Iterable[str]) -> None:
        """Offer ``names`` in the metric picker (keeps the current choice)."""
        names = list(names)
        with self.lock:
            if list(self.picker.options) != names:
                current = self.picker.value
                self.picker.options = names
                self.picker.value = current if current in names else (names[0] if names else None)

    def update(self, keys: Iterable[int]) -> None:
        """Redraw the lines of ``keys``: stream new ones, patch grown ones."""
        with self.lock:
            new: dict[str, Any] = _empty()
            patches: dict[str, list[Any]] = {"xs": [], "ys": []}
            for key in sorted(set(keys)):
                curve = self.curves.get(key)
                if curve is None:
                    continue
                xs, ys = curve.series(self.metric)
                if key in self.rows:
                    patches["xs"].append((self.rows[key], xs))
                    patches["ys"].append((self.rows[key], ys))
                else:
                    self.rows[key] = len(self.rows)
                    width, alpha = self._style(key)
                    for column, value in (("key", key), ("xs", xs), ("ys", ys),
                                          ("color", palette(key)), ("width", width),
                                          ("alpha", alpha)):
                        new[column].append(value)
            if new["key"]:
                self.source.stream(new)
            if patches["xs"]:
                self.source.patch(patches)

    def highlight(self, keys: Iterable[int]) -> None:
        """Draw ``keys`` thick and the others faint (all normal when ``keys`` is empty)."""
        with self.lock:
            self.highlighted = set(keys)
            if not self.rows:
                return
            widths, alphas = [], []
            for key in sorted(self.rows, key=self.rows.__getitem__):
                width, alpha = self._style(key)
                widths.append(width)
                alphas.append(alpha)
            self.source.patch({"width": [(slice(0, len(widths)), widths)],
                               "alpha": [(slice(0, len(alphas)), alphas)]})

    def redraw(self) -> None:
        """Rebuild every line (after the metric changed)."""
        with self.lock:
            data = _empty()
            keys = sorted(self.curves)
            self.rows = {k: i for i, k in enumerate(keys)}
            for key in keys:
                xs, ys = self.curves[key].series(self.metric)
                width, alpha = self._style(key)
                for column, value in (("key", key), ("xs", xs), ("ys", ys),
                                      ("color", palette(key)), ("width", width),
                                      ("alpha", alpha)):
                    data[column].append(value)
            self.source.data = data
            self.figure.yaxis.axis_label = self.metric

    def line(self, key: int) -> tuple[list[float], list[float]]:
        """Return the points of ``key``'s line as the plot's source holds them."""
        with self.lock:
            row = self.rows.get(key)
            if row is None:
                return [], []
            return list(self.source.data["xs"][row]), list(self.source.data["ys"][row])

    def _style(self, key: int) -> tuple[float, float]:
        if not self.highlighted:
            return _NORMAL
        return _HIGHLIGHT if key in self.highlighted else _DIM

    def _on_pick(self, change: dict[str, Any]) -> None:
        if change["new"] and change["new"] != self.metric:
            self.metric = change["new"]
            self.redraw()


def _empty() -> dict[str, list[Any]]:
    return {"key": [], "xs": [], "ys": [], "color": [], "width": [], "alpha": []}


def finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]
