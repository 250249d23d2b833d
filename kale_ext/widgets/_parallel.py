"""Parallel coordinates: each trial a line across its parameters and its best metric.

Each axis has its own scale: numbers by their range (logarithmic when they span two
decades or more, as learning rates do), anything else by sorted category. Every axis
is drawn as a vertical line with its values written beside it, so a line's height
reads as a value. With a ``limit``, only the best trials by the objective (and the
selected ones) are drawn, with a note of how many are left out and a button for more.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

from kale_ext.widgets._bokeh import bokeh_widget, require
from kale_ext.widgets._format import format_number
from kale_ext.widgets._model import TrialBook

_MAX_CATEGORIES = 8  # category labels written on an axis; more are left to the hover


def _numbers(values: list[Any]) -> list[float] | None:
    """Return the values as floats, when every present one is a finite number."""
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)
               and math.isfinite(v)]
    if numbers and len(numbers) == sum(v is not None for v in values):
        return [float(v) for v in numbers]
    return None


def _scale(values: list[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """Map ``values`` onto [0, 1]; return the positions and the axis ticks (y, text)."""
    numbers = _numbers(values)
    if numbers is not None:
        low, high = min(numbers), max(numbers)
        log = low > 0 and high / low >= 100
        f = math.log10 if log else (lambda v: v)
        lo, hi = f(low), f(high)
        if hi == lo:  # one value: the middle of the axis
            pos = [0.5 if v is not None else math.nan for v in values]
            return pos, [(0.5, format_number(low))]
        pos = [(f(float(v)) - lo) / (hi - lo) if v is not None else math.nan for v in values]
        mid = 10 ** ((lo + hi) / 2) if log else (low + high) / 2
        return pos, [(0.0, format_number(low)), (0.5, format_number(mid)),
                     (1.0, format_number(high))]
    labels = sorted({str(v) for v in values if v is not None})
    if len(labels) <= 1:
        return ([0.5 if v is not None else math.nan for v in values],
                [(0.5, labels[0])] if labels else [])
    index = {label: i / (len(labels) - 1) for i, label in enumerate(labels)}
    pos = [index[str(v)] if v is not None else math.nan for v in values]
    step = max(1, math.ceil(len(labels) / _MAX_CATEGORIES))
    return pos, [(index[label], label) for label in labels[::step]]


def coordinates(book: TrialBook, limit: int | None = None,
                keep: Collection[int] = ()) -> dict[str, list[Any]]:
    """Return the parallel-coordinates source: one polyline per scored trial drawn.

    ``limit``: the best that many by the objective (None: all), and those in ``keep``.
    """
    return _draw(book, limit, keep)[0]


def chosen(book: TrialBook, limit: int | None = None, keep: Collection[int] = ()) -> list[int]:
    """Return the scored trials to draw, by number: the best ``limit`` and ``keep``."""
    scored = [n for n, t in book.records.items() if t.best is not None]
    if limit is None or len(scored) <= limit:
        return sorted(scored)
    sign = -1.0 if book.mode == "max" else 1.0
    best = sorted(scored, key=lambda n: (sign * float(book.records[n].best), n))  # type: ignore[arg-type]
    return sorted({*best[:limit], *(n for n in keep if n in book.records
                                    and book.records[n].best is not None)})


def _draw(book: TrialBook, limit: int | None = None, keep: Collection[int] = ()
          ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Return the lines (one per scored trial drawn) and the axis ticks (x, y, text)."""
    scored = chosen(book, limit, keep)
    axes = [*book.param_names, book.best_column]
    frame = {n: book.row(n) for n in scored}
    columns: list[list[float]] = []
    ticks: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
    for i, a in enumerate(axes):
        pos, marks = _scale([frame[n][a] for n in scored])
        columns.append(pos)
        for y, text in marks:
            ticks["x"].append(i)
            ticks["y"].append(y)
            ticks["text"].append(text)
    lines: dict[str, list[Any]] = {
        "trial": scored,
        "xs": [list(range(len(axes))) for _ in scored],
        "ys": [[col[i] for col in columns] for i in range(len(scored))],
        "value": [float(book.records[n].best) for n in scored],  # type: ignore[arg-type]
    }
    return lines, ticks


class ParallelView:
    """A parallel-coordinates plot of ``book``; ``update()`` redraws it from the book.

    ``limit``: lines drawn at most (None: every scored trial), the best by the
    objective, and the selected trials besides; the button draws ``limit`` more.
    """

    def __init__(self, book: TrialBook, *, height: int = 260, limit: int | None = None) -> None:
        widgets = require("ipywidgets")
        require("bokeh")
        from bokeh.models import ColumnDataSource, FixedTicker, HoverTool, Range1d
        from bokeh.models.annotations import ColorBar, LabelSet
        from bokeh.plotting import figure
        from bokeh.transform import linear_cmap

        self.book = book
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a whole number >= 1 or None, but got "
                             f"limit={limit!r}.")
        self.limit, self.step = limit, limit or 0
        self.keep: set[int] = set()
        self.source = ColumnDataSource({"trial": [], "xs": [], "ys": [], "value": []})
        self.ticks = ColumnDataSource({"x": [], "y": [], "text": []})
        self.axes: list[str] = []
        self.figure = figure(height=height, sizing_mode="stretch_width",
                             title=f"parameters vs best {book.metric}",
                             tools="pan,box_zoom,reset,save",
                             y_range=Range1d(start=-0.08, end=1.08))
        self.mapper = linear_cmap("value", "Viridis256", 0, 1)
        self.axis_lines = self.figure.segment(x0="x", y0=0, x1="x", y1=1, source=self.ticks,
                                              line_color="#adb5bd", line_width=1)
        lines = self.figure.multi_line("xs", "ys", source=self.source, line_color=self.mapper,
                                       line_width=2, line_alpha=0.7)
        self.figure.scatter("x", "y", source=self.ticks, size=4, color="#495057")
        self.figure.add_layout(LabelSet(x="x", y="y", text="text", source=self.ticks,
                                        text_font_size="8pt", text_color="#343a40",
                                        x_offset=4, y_offset=-5))
        self.figure.add_tools(HoverTool(renderers=[lines],
                                        tooltips=[("trial", "@trial"), ("best", "@value")]))
        self.figure.add_layout(ColorBar(color_mapper=self.mapper["transform"], width=8,
                                        title=f"best {book.metric}"), "right")
        self.figure.xaxis.ticker = FixedTicker(ticks=[])
        self.figure.yaxis.visible = False
        self.figure.ygrid.visible = False
        self.plot = bokeh_widget(self.figure)
        self.note = widgets.HTML("")
        self.more = widgets.Button(description=f"draw {self.step} more",
                                   layout=widgets.Layout(width="auto", display="none"))
        self.more.on_click(lambda _b: self.draw_more())
        self.widget = widgets.VBox([widgets.HBox([self.note, self.more]), self.plot])

    def select(self, trials: Iterable[int]) -> None:
        """Draw ``trials`` whatever their rank (the selected rows); redraw now."""
        self.keep = set(trials)
        self.update()

    def draw_more(self) -> None:
        """Draw ``limit`` more lines (the button)."""
        if self.limit is not None:
            self.limit += self.step
            self.update()

    def update(self, force: bool = False) -> None:
        """Redraw from the book (``force``: send the data even when unchanged)."""
        data, ticks = _draw(self.book, self.limit, self.keep)
        scored = sum(t.best is not None for t in self.book.records.values())
        left = scored - len(data["trial"])
        note = "" if left <= 0 else (f"{len(data['trial']):,} of {scored:,} scored trials "
                                     f"drawn: the best by {self.book.metric} and the "
                                     f"selected; {left:,} not drawn")
        if self.note.value != note:
            self.note.value = note
        display = None if left > 0 else "none"
        if self.more.layout.display != display:
            self.more.layout.display = display
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
        if force or ticks != self.ticks.data:
            self.ticks.data = ticks
        if force or data != self.source.data:
            self.source.data = data
