"""The live trial table: an ipydatagrid grid, coloured by state, sortable and filterable.

Reports update only the cells that changed (small messages that keep the user's
selection and sort); new trials or columns replace the grid's data, after which the
selection is put back by trial number.

A grid in the page that takes new data clears its selection and sends the empty one
back: one such echo for each replacement sent while rows were selected, however late
the page answers. The table counts those replacements, and an emptied selection is
taken for an echo (and the kept selection shown again) only while one is unanswered;
any other emptied selection is the user's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kale_ext.widgets._bokeh import require
from kale_ext.widgets._format import (
    GRID_FORMAT,
    GRID_TEXT,
    MISSING,
    column_width,
    format_number,
)

if TYPE_CHECKING:
    import pandas as pd

# Row colours by trial state (light, so the text stays readable).
STATE_COLOURS = {
    "pending": "#f1f3f5", "running": "#d0ebff", "paused": "#fff3bf", "completed": "#d3f9d8",
    "pruned": "#e9ecef", "stopped": "#ffe8cc", "failed": "#ffc9c9",
}
_ROW = 22  # pixels per row

# More changed cells than this in one update: send the grid's data whole. Each cell
# message makes the browser repaint the grid, and a repaint costs about as much as a
# whole new dataset (tens of ms in a software-rendered browser on a busy node), so
# one message per update is what keeps the browser abreast of a running search.
_BULK_CELLS = 1


def _state_expr() -> str:
    branches = "".join(f"cell.value == '{s}' ? '{c}' : " for s, c in STATE_COLOURS.items())
    return branches + "'white'"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class TrialTable:
    """A grid of trials indexed by trial number; select rows to act on them."""

    def __init__(self, frame: pd.DataFrame, *, height: int = 320,
                 lock: threading.RLock | None = None) -> None:
        self.ipydatagrid = require("ipydatagrid")
        self.max_height = height
        # A panel passes its own lock: selection callbacks, run under this lock, take the
        # panel's, and the panel's updates take this one, so two locks would deadlock.
        self.lock = lock if lock is not None else threading.RLock()
        self.selected: list[int] = []
        self._on_select: list[Callable[[list[int]], None]] = []
        self._echoes = 0  # data replacements sent with a selection, their echo not yet seen
        self._measured: set[tuple[str, bool, int]] = set()  # (column, sign, exponent) fitted
        self._store(frame)
        self.grid = self.ipydatagrid.DataGrid(
            frame, selection_mode="row", renderers=self._renderers(frame),
            base_column_size=90, base_row_size=_ROW, auto_fit_columns=False,
            column_widths=self._widths(), layout={"height": self._height(len(frame))})
        self.grid.observe(self._on_selections, names="selections")
        self.grid.on_cell_click(self._on_click)

    def _renderers(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Return the renderers: state column coloured, numbers by magnitude.

        Numbers show as :func:`~kale_ext.widgets._format.format_number` writes them
        (four significant digits, scientific below 0.001 and from 10000); a metric not
        reported yet shows an en dash.
        """
        grid = self.ipydatagrid
        out = {str(c): grid.TextRenderer(format=grid.VegaExpr(GRID_FORMAT),
                                         text_value=grid.VegaExpr(GRID_TEXT), missing=MISSING)
               for c, kind in frame.dtypes.items() if kind.kind == "f"}
        out["status"] = grid.TextRenderer(background_color=grid.VegaExpr(_state_expr()))
        return out

    def _widths(self) -> dict[str, int]:
        """Pixels per column (the trial index included): its header and cells uncut."""
        widths = {"trial": column_width("trial", self.order)}
        for column in self.columns:  # one number of each shape: as wide as any of it
            widths[column] = column_width(column, {_shape(row[column])
                                                   for row in self.rows.values()})
        return widths

    def _fit(self, cells: Iterable[tuple[str, Any]] | None = None) -> None:
        """Widen (never narrow) the columns whose text outgrew them.

        ``cells`` are the (column, value) pairs that changed; None: every cell.
        """
        widths = dict(self.grid.column_widths)
        if cells is None:
            wanted = self._widths()
        else:
            wanted = {}
            for column, value in cells:
                if isinstance(value, float) and math.isfinite(value) and value != 0:
                    # Thousands of cells, a few shapes: measure each shape once.
                    key = (column, value < 0, math.frexp(value)[1])
                    if key in self._measured:
                        continue
                    self._measured.add(key)
                    value = _widest_of(*key[1:])
                wanted[column] = max(wanted.get(column, 0), column_width(column, [value]))
        if any(w > widths.get(c, 0) for c, w in wanted.items()):
            self.grid.column_widths = {**widths, **{c: max(w, widths.get(c, 0))
                                                    for c, w in wanted.items()}}

    def _height(self, rows: int) -> str:
        """Tall enough for ``rows`` (and the header and a scroll bar), at most ``max_height``."""
        return f"{min(self.max_height, _ROW * (max(rows, 3) + 2))}px"

    @property
    def widget(self) -> Any:
        return self.grid

    def _store(self, frame: pd.DataFrame) -> None:
        self.columns: list[str] = [str(c) for c in frame.columns]
        self.order: list[int] = [int(n) for n in frame.index]
        self.positions = {n: i for i, n in enumerate(self.order)}
        self.rows: dict[int, dict[str, Any]] = {
            int(n): {str(k): _plain(v) for k, v in row.items()}
            for n, row in zip(frame.index, frame.to_dict("records"), strict=True)}

    def frame(self) -> pd.DataFrame:
        """Return the rows the grid holds now, indexed by trial."""
        with self.lock:
            return self._frame()

    def _frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([self.rows[n] for n in self.order], columns=self.columns,
                            index=pd.Index(self.order, name="trial"))

    # -- updates from the panel's thread -------------------------------------------------

    def reload(self, frame: pd.DataFrame) -> None:
        """Replace the grid's data (new trials or columns); the selection is kept."""
        with self.lock:
            self._store(frame)
            self.grid.renderers = self._renderers(frame)
            self.grid.layout.height = self._height(len(frame))
            self._fit()
            self._replace(frame)

    def _replace(self, frame: pd.DataFrame) -> None:
        keep = list(self.selected)
        if self.grid.selections:  # the page holds a selection: it will echo its clearing
            self._echoes += 1
        self.grid.data = frame
        if keep:
            self.select_trials(keep)

    def update_rows(self, rows: dict[int, dict[str, Any]]) -> int:
        """Set the cells of ``rows`` (trial to row dict) that changed; returns how many.

        A few cells go to the grid one by one; past ``_BULK_CELLS`` the grid gets its
        whole data in one message, which costs far less than thousands of cell updates.
        """
        with self.lock:
            changed = []
            for number, row in rows.items():
                old = self.rows.get(number)
                if old is None:
                    continue
                for column, value in row.items():
                    value = _plain(value)
                    if column not in old or value == old[column]:
                        continue  # the common case, decided without _same
                    if not _same(value, old[column]):
                        old[column] = value
                        changed.append((column, self.positions[number], value))
            if changed:
                self._fit((column, value) for column, _, value in changed)
            if len(changed) > _BULK_CELLS:
                self._replace(self._frame())
            else:
                for column, position, value in changed:
                    self.grid.set_cell_value_by_index(column, position, value)
        return len(changed)

    # -- selection -----------------------------------------------------------------------

    def on_select(self, callback: Callable[[list[int]], None]) -> None:
        """Call ``callback(trial_numbers)`` whenever the selection changes."""
        self._on_select.append(callback)

    def select_trials(self, numbers: Iterable[int]) -> None:
        """Select the rows of trials ``numbers`` (as a click on them would)."""
        with self.lock:
            order = self._visible_order()
            rows = sorted(order.index(n) for n in numbers if n in order)
            self.grid.selections = [
                {"r1": r, "r2": r, "c1": 0, "c2": len(self.columns)} for r in rows]
            self.grid.send_state("selections")
            self._set_selected([order[r] for r in rows])

    def _visible_order(self) -> list[int]:
        """Trial numbers in the order the grid shows them (after its sort and filter)."""
        visible = list(self.grid._visible_rows or [])
        if visible and max(visible) < len(self.order):
            return [self.order[i] for i in visible]
        return list(self.order)

    def _on_selections(self, change: dict[str, Any]) -> None:
        with self.lock:
            if not change["new"] and self._echoes:
                # The grid cleared it while taking new data: show the kept one again.
                self._echoes -= 1
                if self.selected:
                    self.select_trials(self.selected)
                return
            order = self._visible_order()
            rows: set[int] = set()
            for rect in change["new"]:
                rows.update(range(int(rect["r1"]), int(rect["r2"]) + 1))
            self._set_selected([order[r] for r in sorted(rows) if 0 <= r < len(order)])

    def _on_click(self, event: dict[str, Any]) -> None:
        # The clicked row's dataset position is exact even while the grid is sorted.
        row = event.get("primary_key_row")
        if event.get("region") != "body" or not isinstance(row, int):
            return
        with self.lock:
            if 0 <= row < len(self.order) and self.order[row] not in self.selected:
                self._set_selected([self.order[row]])

    def _set_selected(self, numbers: list[int]) -> None:
        if numbers == self.selected:
            return
        self.selected = numbers
        for callback in self._on_select:
            callback(list(numbers))


def _shape(value: Any) -> Any:
    """Return a hashable value written at least as wide as ``value`` (see _widest_like)."""
    if value is None or isinstance(value, float | int | str):
        return _widest_like(value)
    return str(value)  # a list or dict is written as its str


def _widest_of(negative: bool, exponent: int) -> float:
    """Return the widest-written number of a sign and binary exponent (see _widest_like).

    Numbers of binary exponent ``e`` lie in [2**(e-1), 2**e): one or two decades.
    """
    low, high = (_widest_like(math.copysign(math.ldexp(1.0, e), -1.0 if negative else 1.0))
                 for e in (exponent - 1, exponent))
    return max(low, high, key=lambda v: len(format_number(v)))


def _widest_like(value: Any) -> Any:
    """Return the number of ``value``'s sign and decade written widest (four digits).

    Four significant digits are the most the grid writes, and trailing zeros are
    trimmed, so no number of that sign and decade is written wider.
    """
    if not isinstance(value, float) or not math.isfinite(value) or value == 0:
        return value
    decade = math.floor(math.log10(abs(value)))
    if abs(decade) > 300:
        return value
    return math.copysign(float(f"1.111e{decade}"), value)


def _plain(value: Any) -> Any:
    """Return a cell value the grid's JSON accepts (numpy scalars to Python ones)."""
    kind = type(value)
    if kind is float:  # most cells, first
        return None if value != value else value
    if kind is str or kind is int or value is None:
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
