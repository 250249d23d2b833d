"""Parquet and CSV: a trials table and a metrics table.

``DIR/<search>.trials.<ext>``: one row per trial with ``trial``, ``state``, ``reason``,
``error``, ``attempt``, ``retries``, ``worker``, ``started``, ``ended`` (Unix seconds),
``best`` and ``best_step`` (its best value of the objective), ``is_best`` (the search's
best trial), ``checkpoint`` (the latest), ``checkpoints`` (how many), a ``params.<name>``
column per flat parameter and a ``last.<name>`` column per metric of its latest report.

``DIR/<search>.metrics.<ext>``: one row per metric row with ``trial``, ``attempt``,
``rank``, ``seq``, ``step``, ``time`` and a column per metric (``metric.<name>`` for a
metric named like one of those).

Integer columns with gaps stay integers (nullable); columns that mix kinds of values
(numbers and text, lists) hold JSON text, so Parquet keeps one type per column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kale_ext.export._data import SearchData
from kale_ext.export._deps import require

FORMATS = ("parquet", "csv")
_ROW_FIELDS = ("trial", "attempt", "rank", "seq", "step", "time")


def _trial_rows(data: SearchData) -> list[dict[str, Any]]:
    best = data.best.number if data.best is not None else None
    rows = []
    for t in data.trials:
        row: dict[str, Any] = {
            "trial": t.number, "state": t.state, "reason": t.reason, "error": t.error,
            "attempt": t.attempt, "retries": t.retries, "worker": t.worker,
            "started": t.started, "ended": t.ended, "best": t.best, "best_step": t.best_step,
            "is_best": t.number == best, "checkpoint": t.checkpoint,
            "checkpoints": len(t.checkpoints)}
        row.update({f"params.{k}": v for k, v in t.flat.items()})
        row.update({f"last.{k}": v for k, v in t.last.items()})
        rows.append(row)
    return rows


def _column(values: list[Any]) -> Any:
    """One typed column: nullable ints, bools or floats, text, or JSON text for a mix."""
    import pandas as pd

    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {int}:
        return pd.array(values, dtype="Int64")  # missing ints stay ints, not NaN floats
    if kinds and kinds <= {bool}:
        return pd.array(values, dtype="boolean")
    if kinds and kinds <= {int, float}:
        return pd.array([float("nan") if v is None else float(v) for v in values],
                        dtype="float64")
    if kinds <= {str}:
        return pd.array(values, dtype=object)
    return pd.array([None if v is None else v if isinstance(v, str)
                     else json.dumps(v, sort_keys=True, default=str) for v in values],
                    dtype=object)


def _frame(rows: list[dict[str, Any]], first: tuple[str, ...]) -> Any:
    import pandas as pd

    names = dict.fromkeys(first)
    for row in rows:
        names.update(dict.fromkeys(row))
    return pd.DataFrame({n: _column([row.get(n) for row in rows]) for n in names})


def write(data: SearchData, dir: Path, *, fmt: str) -> list[Path]:
    """Write the trials and metrics tables of ``data`` into ``dir``; return their paths."""
    require("pandas", target=fmt, package="pandas")
    if fmt == "parquet":
        require("pyarrow", target=fmt, package="pyarrow")
    trials = _frame(_trial_rows(data), ("trial", "state", "reason"))
    # A metric named like a row field ("time") keeps its value as "metric.time".
    metrics = _frame([{"trial": r.trial, "attempt": r.attempt, "rank": r.rank, "seq": r.seq,
                       "step": r.step, "time": r.time,
                       **{f"metric.{k}" if k in _ROW_FIELDS else k: v
                          for k, v in r.values.items()}} for r in data.rows], _ROW_FIELDS)
    dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, frame in (("trials", trials), ("metrics", metrics)):
        path = dir / f"{data.name}.{label}.{fmt}"
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        paths.append(path)
    return paths
