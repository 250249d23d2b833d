"""The panel's state, built from store deltas: table rows, learning curves, summary.

Pure Python (no widgets) so it can be tested and benchmarked on its own; the widget
classes only render what changed here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_ext.search import Space, summarize
from kale_ext.trial import TrialState, launch_summary
from kale_ext.widgets._eta import Eta

if TYPE_CHECKING:
    import pandas as pd

    from kale_ext.store import MetricRow, TrialRecord
    from kale_ext.widgets._feed import Delta

METRIC_ORDER = ("loss", "val_loss", "acc", "val_acc")
STEP_KEYS = ("epoch", "step", "iteration", "training_iteration")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


class Curve:
    """One trial's (or rank's) reported values over steps, for its latest attempt.

    Reports are kept as they come and sorted into per-metric columns only when
    ``values`` or ``series()`` is read: a search of thousands of trials draws few of
    them, and the others cost one append per report.
    """

    def __init__(self, attempt: int = 0) -> None:
        self.attempt = attempt
        self.x: list[float] = []
        self._values: dict[str, list[float]] = {}
        self._pending: list[dict[str, Any]] = []  # reports not in ``_values`` yet

    def add(self, x: float, data: dict[str, Any]) -> None:
        self.x.append(x)
        self._pending.append(data)

    @property
    def values(self) -> dict[str, list[float]]:
        """Each metric's values, one per step (NaN where a report lacked it)."""
        if self._pending:
            n = len(self.x) - len(self._pending)
            for data in self._pending:
                for name, value in data.items():
                    if name in STEP_KEYS:
                        continue
                    v = _number(value)
                    if math.isnan(v) and name not in self._values:
                        continue  # a string or list: not plotted
                    column = self._values.setdefault(name, [math.nan] * n)
                    column.append(v)
                n += 1
                for column in self._values.values():
                    if len(column) < n:
                        column.append(math.nan)
            self._pending.clear()
        return self._values

    def series(self, metric: str) -> tuple[list[float], list[float]]:
        ys = self.values.get(metric)
        if ys is None:
            return [], []
        pairs = [(x, y) for x, y in zip(self.x, ys, strict=True) if not math.isnan(y)]
        return [p[0] for p in pairs], [p[1] for p in pairs]


def add_rows(curves: dict[int, Curve], rows: list[MetricRow], key: str) -> set[int]:
    """Append metric rows to per-trial (``key="trial"``) or per-rank (``"rank"``) curves.

    A newer attempt of a trial replaces its curve (a restart starts from scratch).
    Returns the keys whose curves changed.
    """
    touched: set[int] = set()
    for row in rows:
        k = row.trial if key == "trial" else row.rank
        curve = curves.get(k)
        if curve is None or row.attempt > curve.attempt:
            curve = curves[k] = Curve(attempt=row.attempt)
        elif row.attempt < curve.attempt:
            continue  # a late row of a superseded attempt
        curve.add(float(row.step if row.step is not None else row.seq), row.values)
        touched.add(k)
    return touched


@dataclass
class Change:
    """What one delta changed, for the views to redraw only that."""

    new_trials: list[int] = field(default_factory=list)
    rows: set[int] = field(default_factory=set)
    curves: set[int] = field(default_factory=set)
    columns: bool = False
    last_rowid: int = 0

    @property
    def empty(self) -> bool:
        return not (self.new_trials or self.rows or self.curves or self.columns)


class TrialBook:
    """Everything a search panel shows, kept up to date from store deltas.

    Parameters
    ----------
    definition
        The search definition from its store (metric, mode, space, trials).
    created
        When the search was created (for the elapsed time).
    """

    def __init__(self, definition: dict[str, Any], created: float) -> None:
        self.metric: str = definition.get("metric", "")
        self.mode: str = definition.get("mode", "max")
        self.n_trials: int | None = definition.get("trials")
        self.created = created
        self.space: Space | None = None
        self.param_names: list[str] = []
        if definition.get("space"):
            self.space = Space.from_dict(definition["space"])
            self.param_names = list(Space.flatten(self.space.spec))
        self.metric_names: list[str] = []
        self.records: dict[int, TrialRecord] = {}
        self.curves: dict[int, Curve] = {}
        self.state = ""
        self.updated = created
        self.eta = Eta(self.n_trials)
        self.moves: dict[int, int] = {}  # migrations off workers about to retire, by trial

    # -- applying deltas ---------------------------------------------------------------

    def apply(self, delta: Delta) -> Change:
        change = Change(last_rowid=delta.last_rowid)
        self.state = delta.state or self.state
        change.columns = bool(delta.migrations) and not any(self.moves.values()) \
            and any(delta.migrations.values())  # the moves column appears
        self.moves.update(delta.migrations)
        for t in delta.trials:
            if t.number not in self.records:
                change.new_trials.append(t.number)
            self.records[t.number] = t
            change.rows.add(t.number)
            for name in Space.flatten(t.params):
                if name not in self.param_names:
                    self.param_names.append(name)
                    change.columns = True
            for name in t.last:
                if name not in STEP_KEYS and name not in self.metric_names:
                    self.metric_names.append(name)
                    change.columns = True
        if change.columns:
            known = [m for m in METRIC_ORDER if m in self.metric_names]
            self.metric_names = known + sorted(m for m in self.metric_names if m not in known)
        rank0 = [r for r in delta.rows if r.rank == 0]
        change.curves = add_rows(self.curves, rank0, "trial")
        if delta.rows or delta.trials:
            self.updated = delta.polled or time.time()
        return change

    def ranked(self) -> list[int]:
        """Trial numbers in the order to draw them when not all are drawn.

        Running trials first (by number, so the set drawn stays put while they run),
        then the others best value first, then those with no value yet.
        """
        sign = -1.0 if self.mode == "max" else 1.0
        running = int(TrialState.RUNNING)

        def key(n: int) -> tuple[bool, bool, float, int]:
            t = self.records.get(n)
            best = _number(t.best) if t is not None else math.nan
            if t is not None and int(t.state) == running:
                return (False, False, 0.0, n)
            return (True, math.isnan(best), 0.0 if math.isnan(best) else sign * best, n)

        return sorted(self.records.keys() | self.curves.keys(), key=key)

    # -- the table -----------------------------------------------------------------------

    @property
    def best_column(self) -> str:
        return f"best_{self.metric}"

    def columns(self) -> list[str]:
        return ["status", "epoch", *self.param_names, *self.metric_names, self.best_column,
                "worker", *(["moves"] if any(self.moves.values()) else []), "launch"]

    def row(self, number: int) -> dict[str, Any]:
        t = self.records[number]
        params = Space.flatten(t.params)
        step = next((t.last[k] for k in STEP_KEYS if k in t.last), None)
        row: dict[str, Any] = {"status": TrialState(t.state).label,
                               "epoch": _number(step)}
        for name in self.param_names:
            row[name] = params.get(name)
        for name in self.metric_names:
            value = t.last.get(name)
            row[name] = value if isinstance(value, str) else _number(value)
        row[self.best_column] = _number(t.best)
        row["worker"] = t.worker or ""
        if any(self.moves.values()):
            row["moves"] = self.moves.get(number, 0)
        # Submission to first report, and its largest part: why this trial started late.
        row["launch"] = launch_summary(t.launch)
        return row

    def frame(self) -> pd.DataFrame:
        """Return the table as a DataFrame indexed by trial number."""
        import pandas as pd

        numbers = sorted(self.records)
        frame = pd.DataFrame([self.row(n) for n in numbers], columns=self.columns(),
                             index=pd.Index(numbers, name="trial"))
        for name in self.param_names:  # a column of mixed values (a conditional space)
            if frame[name].map(type).nunique() > 1:
                frame[name] = frame[name].map(lambda v: "" if v is None else str(v))
        return frame

    # -- the summary ---------------------------------------------------------------------

    def summary(self, now: float | None = None) -> str:
        """Trials by state, best so far, elapsed time and an estimate of what is left."""
        now = time.time() if now is None else now
        running = self.state in ("running", "created", "")
        elapsed = (now if running else self.updated) - self.created
        summary = summarize(self.records.values(), mode=self.mode, planned=self.n_trials)
        parts = [summary.describe()]
        if summary.best is not None:
            parts.append(f"best {self.metric} {summary.best['value']:.4g} "
                         f"(trial {summary.best['trial']})")
        parts.append(f"elapsed {_duration(elapsed)}")
        left = self.eta.update(now, self.records.values()) if running else None
        if left is not None:
            parts.append(f"about {_duration(left)} left")
        parts.append(f"search {self.state or 'created'}")
        return " | ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
