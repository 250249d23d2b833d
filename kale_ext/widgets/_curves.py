"""Live learning curves: one line per trial (or rank) for a chosen metric.

All lines live in one bokeh ``MultiLine`` source: a new trial's line is appended with
``ColumnDataSource.stream`` and a growing line is updated with ``patch``, so each
refresh sends a few small document events, however many trials changed. Every report
is also a marker (a trial pruned after one report is a point, not an invisible line
of no length), and each line is labelled with its trial at its last point; markers and
labels follow at most once per ``marker_interval`` seconds, so a fast search costs the
browser one redraw per update, not three. A checkbox hides the lines ``hideable``
picks (the panel: pruned trials).

With a ``limit``, at most that many lines are drawn (plus the highlighted ones): the
first keys of ``ranked()`` (the panel: running trials, then the best by the objective).
A note says how many are left out and a button draws ``limit`` more; thousands of
lines would cost seconds to send and show nothing a user can read.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
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
        What a key is (``"trial"`` or ``"rank"``), for the labels and tooltips.
    metric
        The metric shown first.
    hideable
        Which keys the "hide" checkbox hides (None: no checkbox), and its label.
    """

    def __init__(self, curves: dict[int, Curve], *, key_label: str = "trial",
                 metric: str = "", title: str = "", height: int = 280,
                 hideable: Callable[[int], bool] | None = None,
                 hide_label: str = "hide pruned trials", marker_interval: float = 1.0,
                 limit: int | None = None, ranked: Callable[[], list[int]] | None = None,
                 ranked_label: str = "") -> None:
        widgets = require("ipywidgets")
        require("bokeh")
        from bokeh.models import ColumnDataSource, HoverTool
        from bokeh.models.annotations import LabelSet
        from bokeh.plotting import figure

        self.curves = curves
        self.key_label = key_label
        self.metric = metric
        self.hideable = hideable
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a whole number >= 1 or None, but got "
                             f"limit={limit!r}.")
        self.limit, self.step = limit, limit or 0
        self.ranked = ranked
        self.ranked_label = ranked_label
        self.lock = threading.RLock()
        self.rows: dict[int, int] = {}  # key -> row of the line and label sources
        self.counts: dict[int, int] = {}  # key -> its points in the marker source
        self.highlighted: set[int] = set()
        self.marker_interval = marker_interval
        self._marked_at = 0.0
        self._unmarked: set[int] = set()  # keys whose markers and label lag their line
        self._left_out: set[int] = set()  # keys not drawn since the last choice
        self.source = ColumnDataSource(_empty())
        self.points = ColumnDataSource({"x": [], "y": [], "key": [], "color": []})
        self.ends = ColumnDataSource({"x": [], "y": [], "label": [], "color": []})
        self.figure = figure(height=height, sizing_mode="stretch_width", title=title,
                             x_axis_label="epoch", y_axis_label=metric,
                             tools="pan,wheel_zoom,box_zoom,reset,save")
        lines = self.figure.multi_line("xs", "ys", source=self.source, line_color="color",
                                       line_width="width", line_alpha="alpha")
        dots = self.figure.scatter("x", "y", source=self.points, size=5, color="color",
                                   alpha=0.9)
        self.figure.add_layout(LabelSet(x="x", y="y", text="label", source=self.ends,
                                        text_color="color", text_font_size="9pt",
                                        x_offset=4, y_offset=-6))
        self.figure.add_tools(HoverTool(renderers=[lines], tooltips=[
            (key_label, "@key"), ("value", "$y")]))
        self.figure.add_tools(HoverTool(renderers=[dots], tooltips=[
            (key_label, "@key"), ("epoch", "@x"), ("value", "@y")]))
        self.picker = widgets.Dropdown(description="metric", options=[metric] if metric else [],
                                       value=metric or None,
                                       layout=widgets.Layout(width="260px"))
        self._picking = False
        self.picker.observe(self._on_pick, names="value")
        self.hide = widgets.Checkbox(value=False, description=hide_label, indent=False,
                                     layout=widgets.Layout(width="auto"))
        self.hide.observe(lambda _c: self.redraw(), names="value")
        self.note = widgets.HTML("")
        self.more = widgets.Button(description=f"draw {self.step} more",
                                   layout=widgets.Layout(width="auto", display="none"))
        self.more.on_click(lambda _b: self.draw_more())
        self.plot = bokeh_widget(self.figure)
        bar = [self.picker] + ([self.hide] if hideable is not None else []) + \
            [self.note, self.more]
        self.widget = widgets.VBox([widgets.HBox(bar), self.plot])

    # -- updates -------------------------------------------------------------------------

    def set_metrics(self, names: Iterable[str]) -> None:
        """Offer ``names`` in the metric picker (keeps the current choice)."""
        names = list(names)
        with self.lock:
            if list(self.picker.options) != names:
                current = self.picker.value
                self._picking = True  # new options pass through other values: no redraws
                try:
                    self.picker.options = names
                    self.picker.value = current if current in names else \
                        (names[0] if names else None)
                finally:
                    self._picking = False
                if self.picker.value and self.picker.value != self.metric:
                    self.metric = self.picker.value
                    self.redraw()

    def _hidden(self, key: int) -> bool:
        return bool(self.hide.value and self.hideable is not None and self.hideable(key))

    def update(self, keys: Iterable[int]) -> None:
        """Redraw the lines of ``keys``: stream new ones, patch grown ones."""
        with self.lock:
            new: dict[str, Any] = _empty()
            patches: dict[str, list[Any]] = {"xs": [], "ys": []}
            for key in sorted(set(keys)):
                curve = self.curves.get(key)
                if curve is None or self._hidden(key):
                    continue
                if key not in self.rows and self._full():
                    self._left_out.add(key)
                    continue
                xs, ys = curve.series(self.metric)
                if len(xs) < self.counts.get(key, 0):  # a restart: its line starts again
                    self.redraw()
                    return
                self._unmarked.add(key)
                # Arrays, not lists: bokeh sends an array as one buffer, a list item by item.
                ax, ay = _array(xs), _array(ys)
                if key in self.rows:
                    patches["xs"].append((self.rows[key], ax))
                    patches["ys"].append((self.rows[key], ay))
                else:
                    self.rows[key] = len(self.rows)
                    width, alpha = self._style(key)
                    for column, value in (("key", key), ("xs", ax), ("ys", ay),
                                          ("color", palette(key)), ("width", width),
                                          ("alpha", alpha)):
                        new[column].append(value)
            if new["key"]:
                self.source.stream(new)
            if patches["xs"]:
                self.source.patch(patches)
            self._show_note()
            self.flush_markers()

    def flush_markers(self, force: bool = False) -> None:
        """Bring markers and labels up to the lines (at most once per marker_interval)."""
        with self.lock:
            now = time.monotonic()
            if not self._unmarked or (not force and now - self._marked_at < self.marker_interval):
                return
            self._marked_at = now
            ends: dict[str, Any] = {"x": [], "y": [], "label": [], "color": []}
            end_patches: dict[str, list[Any]] = {"x": [], "y": []}
            points: dict[str, Any] = {"x": [], "y": [], "key": [], "color": []}
            labelled = len(self.ends.data["label"])
            for key in sorted(self._unmarked, key=lambda k: self.rows.get(k, -1)):
                row = self.rows.get(key)
                if row is None:
                    continue
                xs, ys = self.curves[key].series(self.metric)
                done = self.counts.get(key, 0)
                points["x"].extend(xs[done:])
                points["y"].extend(ys[done:])
                points["key"].extend([key] * (len(xs) - done))
                points["color"].extend([palette(key)] * (len(xs) - done))
                self.counts[key] = len(xs)
                end_x, end_y = (xs[-1], ys[-1]) if xs else (math.nan, math.nan)
                if row < labelled:
                    end_patches["x"].append((row, end_x))
                    end_patches["y"].append((row, end_y))
                else:  # rows are labelled in order: a new row follows the labelled ones
                    for column, value in (("x", end_x), ("y", end_y),
                                          ("label", self._label(key)), ("color", palette(key))):
                        ends[column].append(value)
            self._unmarked.clear()
            if ends["x"]:
                self.ends.stream(ends)
            if end_patches["x"]:
                self.ends.patch(end_patches)
            if points["x"]:
                self.points.stream(points)

    def hide_now(self, keys: Iterable[int]) -> None:
        """Redraw if one of ``keys`` (say, a trial just pruned) is drawn and now hidden."""
        if any(k in self.rows and self._hidden(k) for k in keys):
            self.redraw()

    def highlight(self, keys: Iterable[int]) -> None:
        """Draw ``keys`` thick and the others faint (all normal when ``keys`` is empty)."""
        with self.lock:
            self.highlighted = set(keys)
            if self.limit is not None and self.choose() != sorted(self.rows):
                self.redraw()  # a selected trial is drawn; one no longer selected may go
                return
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
        """Rebuild every line and marker (after the metric or the hidden ones changed)."""
        with self.lock:
            data = _empty()
            ends: dict[str, list[Any]] = {"x": [], "y": [], "label": [], "color": []}
            points: dict[str, list[Any]] = {"x": [], "y": [], "key": [], "color": []}
            keys = self.choose()
            self.rows = {k: i for i, k in enumerate(keys)}
            self._left_out = {k for k in self.curves if k not in self.rows}
            self.counts = {}
            self._unmarked.clear()
            for key in keys:
                xs, ys = self.curves[key].series(self.metric)
                width, alpha = self._style(key)
                for column, value in (("key", key), ("xs", _array(xs)), ("ys", _array(ys)),
                                      ("color", palette(key)), ("width", width),
                                      ("alpha", alpha)):
                    data[column].append(value)
                for column, value in (("x", xs[-1] if xs else math.nan),
                                      ("y", ys[-1] if ys else math.nan),
                                      ("label", self._label(key)), ("color", palette(key))):
                    ends[column].append(value)
                points["x"].extend(xs)
                points["y"].extend(ys)
                points["key"].extend([key] * len(xs))
                points["color"].extend([palette(key)] * len(xs))
                self.counts[key] = len(xs)
            self.source.data = data
            self.ends.data = ends
            self.points.data = points
            self.figure.yaxis.axis_label = self.metric
            self._show_note()

    # -- the bounded set of lines --------------------------------------------------------

    def choose(self) -> list[int]:
        """Return the keys to draw, by key: the first ``limit`` ranked and the highlighted."""
        with self.lock:
            shown = [k for k in self.curves if not self._hidden(k)]
            if self.limit is None or len(shown) <= self.limit:
                return sorted(shown)
            keys = set(shown)
            order = self.ranked() if self.ranked is not None else sorted(shown)
            chosen = [k for k in order if k in keys][:self.limit]
            return sorted({*chosen, *(self.highlighted & keys)})

    def rechoose(self) -> bool:
        """Redraw if the keys to draw changed (say, a drawn trial ended); True if so."""
        with self.lock:
            if self.limit is None or (not self._left_out and len(self.rows) < self.limit):
                return False
            if self.choose() == sorted(self.rows):
                return False
            self.redraw()
            return True

    def draw_more(self) -> None:
        """Draw ``limit`` more lines (the button)."""
        with self.lock:
            if self.limit is not None:
                self.limit += self.step
                self.redraw()

    def _full(self) -> bool:
        return self.limit is not None and \
            len(self.rows) >= self.limit + len(self.highlighted & self.rows.keys())

    def _show_note(self) -> None:
        left = len(self._left_out)
        note = "" if not left else (
            f"{len(self.rows):,} of {len(self.rows) + left:,} {self.key_label}s drawn"
            f"{': ' + self.ranked_label if self.ranked_label else ''}; {left:,} not drawn")
        if self.note.value != note:
            self.note.value = note
        display = None if left else "none"
        if self.more.layout.display != display:
            self.more.layout.display = display

    def line(self, key: int) -> tuple[list[float], list[float]]:
        """Return the points of ``key``'s line as the plot's source holds them."""
        with self.lock:
            row = self.rows.get(key)
            if row is None:
                return [], []
            return list(self.source.data["xs"][row]), list(self.source.data["ys"][row])

    def _label(self, key: int) -> str:
        return f"{'r' if self.key_label == 'rank' else 't'}{key}"

    def _style(self, key: int) -> tuple[float, float]:
        if not self.highlighted:
            return _NORMAL
        return _HIGHLIGHT if key in self.highlighted else _DIM

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._picking:
            return
        if change["new"] and change["new"] != self.metric:
            self.metric = change["new"]
            self.redraw()


def _empty() -> dict[str, list[Any]]:
    return {"key": [], "xs": [], "ys": [], "color": [], "width": [], "alpha": []}


def _array(values: list[float]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=float)


def finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]
