"""Parallel coordinates: each trial a line across its parameters and its best metric."""

from __future__ import annotations

import math
from typing import Any

from kale_ext.widgets._bokeh import bokeh_widget, require
from kale_ext.widgets._model import TrialBook


def _axis(values: list[Any]) -> list[float]:
    """Values mapped onto [0, 1]: numbers by range, anything else by sorted category."""
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)
               and math.isfinite(v)]
    if numbers and len(numbers) == sum(v is not None for v in values):
        low, high = min(numbers), max(numbers)
        if high == low:  # one value: the middle of the axis
            return [0.5 if v is not None else math.nan for v in values]
        span = high - low
        return [(v - low) / span if isinstance(v, int | float) and math.isfinite(v)
                else math.nan for v in values]
    labels = sorted({str(v) for v in values if v is not None})
    index = {label: i for i, label in enumerate(labels)}
    if len(labels) == 1:
        return [0.5 if v is not None else math.nan for v in values]
    span = len(labels) - 1
    return [index[str(v)] / span if v is not None else math.nan for v in values]


def coordinates(book: TrialBook) -> dict[str, list[Any]]:
    """Return the parallel-coordinates source: one polyline per scored trial."""
    scored = sorted(n for n, t in book.records.items() if t.best is not None)
    axes = [*book.param_names, book.best_column]
    frame = {n: book.row(n) for n in scored}
    columns = [_axis([frame[n][a] for n in scored]) for a in axes]
    return {
        "trial": scored,
        "xs": [list(range(len(axes))) for _ in scored],
        "ys": [[col[i] for col in columns] for i in range(len(scored))],
        "value": [float(book.records[n].best) for n in scored],  # type: ignore[arg-type]
    }


class ParallelView:
    """A parallel-coordinates plot of ``book``; ``update()`` redraws it from the book."""

    def __init__(self, book: TrialBook, *, height: int = 260) -> None:
        require("bokeh")
        from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d
        from bokeh.models.annotations import ColorBar
        from bokeh.plotting import figure
        from bokeh.transform import linear_cmap

        self.book = book
        self.source = ColumnDataSource({"trial": [], "xs": [], "ys": [], "value": []})
        self.axes: list[str] = []
        self.figure = figure(height=height, sizing_mode="stretch_width",
                             title=f"parameters vs best {book.metric}",
                             tools="pan,box_zoom,reset,save",
                             y_range=Range1d(start=-0.05, end=1.05))
        self.mapper = linear_cmap("value", "Viridis256", 0, 1)
        lines = self.figure.multi_line("xs", "ys", source=self.source, line_color=self.mapper,
                                       line_width=2, line_alpha=0.7)
        self.figure.add_tools(HoverTool(renderers=[lines],
                                        tooltips=[("trial", "@trial"), ("best", "@value")]))
        self.figure.add_layout(ColorBar(color_mapper=self.mapper["transform"], width=8),
                               "right")
        self.figure.xaxis.ticker = FixedTicker(ticks=[])
        self.figure.yaxis.visible = False
        self.plot = bokeh_widget(self.figure)
        self.widget = self.plot

    def update(self, force: bool = False) -> None:
        """Redraw from the book (``force``: send the data even when unchanged)."""
        data = coordinates(self.book)
        axes = [*self.book.param_names, self.book.best_column]
        if axes != self.axes:
            self.axes = axes
            self.figure.xaxis.ticker = list(range(len(axes)))
            self.figure.xaxis.major_label_overrides = dict(enumerate(axes))
        if data["value"]:
            low, high = min(data["value"]), max(data["value"])
            transform = self.mapper["transform"]
            if (transform.low, transform.high) != (low, high):
                transform.update(low=low, high=high if high > low else low + 1e-12)
        if force or data != self.source.data:
            self.source.data = data
