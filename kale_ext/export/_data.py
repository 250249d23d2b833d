"""One read of a store for every export target: the search, its trials and metric rows.

The targets only see these frozen snapshots, so each writes the same trials, states,
reasons, rows and best trial, read once from the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_ext.trial import TrialState

if TYPE_CHECKING:
    from kale_ext.store import MetricRow, Store

# Rows read per query: a long search has millions; paging keeps each read short.
_PAGE = 20_000


@dataclass(frozen=True)
class TrialData:
    """One trial as exported.

    Attributes
    ----------
    number : int
        The trial's number in the search (a training run is trial 0).
    state : str
        Its state's label: ``pending``, ``running``, ``paused``, ``completed``,
        ``pruned``, ``stopped`` or ``failed``.
    reason : str
        Why it is in that state (the reason of its latest transition).
    params : dict
        Its config as stored (nested dicts for nested spaces).
    flat : dict
        The same config with nested names joined by ``"."``.
    best, best_step : float or None, int or None
        The best value of the search's objective it reported, and at which step.
    checkpoint : str or None
        Its latest checkpoint; ``checkpoints`` has every one, oldest first.
    """

    number: int
    state: str
    reason: str
    params: dict[str, Any]
    flat: dict[str, Any]
    error: str | None = None
    attempt: int = 0
    retries: int = 0
    worker: str | None = None
    started: float | None = None
    ended: float | None = None
    best: float | None = None
    best_step: int | None = None
    last: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    checkpoints: tuple[str, ...] = ()

    @property
    def run_name(self) -> str:
        """Name the trial's run in TensorBoard and MLflow: ``trial-0007``."""
        return f"trial-{self.number:04d}"


@dataclass(frozen=True)
class SearchData:
    """A search (or a training run) read from its store, ready to export.

    Attributes
    ----------
    name : str
        The search's name.
    kind : str
        ``"search"``, or ``"training"`` for a :class:`kale_ext.training.TrainingRun`.
    metric, mode : str or None
        The objective and ``"max"``/``"min"``; None for a training run.
    definition : dict
        The stored definition, without the pickled trial function.
    trials : tuple of TrialData
        Every trial, by number.
    rows : tuple of MetricRow
        Every metric row of every trial, rank and attempt, in the order stored.
    best : TrialData or None
        The trial with the best value of the objective (any state), as ``kale`` ranks.
    """

    name: str
    kind: str
    state: str | None
    metric: str | None
    mode: str | None
    definition: dict[str, Any]
    store: str | None
    trials: tuple[TrialData, ...]
    rows: tuple[MetricRow, ...]
    best: TrialData | None

    def rows_of(self, number: int) -> list[MetricRow]:
        """Return the metric rows of trial ``number``, in the order stored."""
        return [r for r in self.rows if r.trial == number]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Join nested names with dots: ``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def scalar(value: Any) -> Any:
    """Return ``value`` if it is None, a bool, a number or a string, else its JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def number(value: Any) -> float | None:
    """Return a metric value as a float, or None when it is not a number (text, bools)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def step_of(row: MetricRow) -> int:
    """Return the row's step; rows reported without one count by their sequence number."""
    return row.step if row.step is not None else row.seq


def metric_name(row: MetricRow, key: str) -> str:
    """Name a metric: ``loss`` for rank 0, ``rank1/loss`` for the other ranks."""
    return key if row.rank == 0 else f"rank{row.rank}/{key}"


def _best(trials: tuple[TrialData, ...], mode: str | None) -> TrialData | None:
    best: TrialData | None = None
    for t in trials:
        if t.best is None or mode not in ("min", "max") or not math.isfinite(t.best):
            continue
        if best is None or best.best is None or \
                (t.best > best.best if mode == "max" else t.best < best.best):
            best = t
    return best


def trials_of(store: Store) -> tuple[TrialData, ...]:
    """Read every trial of ``store`` with its reason and checkpoints, by number."""
    reasons: dict[int, str] = {}
    for transition in store.transitions():
        reasons[transition.trial] = transition.reason  # in order: the latest one wins
    checkpoints: dict[int, list[str]] = {}
    for c in store.checkpoints():
        checkpoints.setdefault(c.trial, []).append(c.path)
    return tuple(
        TrialData(number=t.number, state=TrialState(t.state).label,
                  reason=reasons.get(t.number, ""), params=dict(t.params),
                  flat=flatten(t.params), error=t.error, attempt=t.attempt, retries=t.retries,
                  worker=t.worker, started=t.started, ended=t.ended, best=t.best,
                  best_step=t.best_step, last=dict(t.last), checkpoint=t.checkpoint,
                  checkpoints=tuple(checkpoints.get(t.number, ())))
        for t in sorted(store.trials(), key=lambda t: t.number))


def rows_since(store: Store, rowid: int) -> list[MetricRow]:
    """Read every metric row stored after row id ``rowid``, in pages, in order."""
    rows: list[MetricRow] = []
    while True:
        page = store.metrics(since_rowid=rows[-1].rowid if rows else rowid, limit=_PAGE)
        rows.extend(page)
        if len(page) < _PAGE:
            return rows


def read(store: Store, path: str | None = None) -> SearchData:
    """Read everything an export writes from ``store`` (live or read-only alike)."""
    info = store.search()
    definition = {k: v for k, v in dict(info.get("definition") or {}).items()
                  if k != "fn_pickle"}
    trials = trials_of(store)
    rows = rows_since(store, 0)
    mode = definition.get("mode")
    return SearchData(
        name=str(info.get("name") or definition.get("name") or "search"),
        kind="training" if definition.get("kind") == "training" else "search",
        state=info.get("state"), metric=definition.get("metric"), mode=mode,
        definition=definition, store=path, trials=trials, rows=tuple(rows),
        best=_best(trials, mode))
