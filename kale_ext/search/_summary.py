"""One read model of a search: its trials by state, its progress and its best trial.

Built from the store's trial records, so ``kale.searches()``, ``Search.summary()``, its
repr, the panel and the REST API say the same thing, live or read back by another
process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_ext.trial import TrialState

if TYPE_CHECKING:
    from kale_ext.store import Store, TrialRecord


@dataclass(frozen=True)
class SearchSummary:
    """What a search amounts to so far.

    Attributes
    ----------
    counts : dict
        Trials by state label (``"running"``, ``"completed"``, ...).
    finished : int
        Trials that ended (completed, pruned, stopped or failed).
    total : int
        Trials so far.
    planned : int or None
        Trials the search was asked for.
    best : dict or None
        The trial with the best value of the objective: ``trial``, ``value``, ``step``,
        ``config`` and ``state``; None before the first value.
    """

    counts: dict[str, int] = field(default_factory=dict)
    finished: int = 0
    total: int = 0
    planned: int | None = None
    best: dict[str, Any] | None = None

    @property
    def progress(self) -> float | None:
        """The finished share of the planned trials, 0 to 1; None when none are planned."""
        return min(1.0, self.finished / self.planned) if self.planned else None

    def describe(self) -> str:
        """Return the counts as text: ``"2 completed, 1 running"``, or ``"no trials yet"``."""
        return ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "no trials yet"


def summarize(trials: Iterable[TrialRecord], *, mode: str | None,
              planned: int | None = None) -> SearchSummary:
    """Summarize a search's ``trials`` (the store's records).

    Parameters
    ----------
    trials
        The store's trial records.
    mode
        ``"max"`` or ``"min"``, by which the best trial is picked; None: no best.
    planned
        The number of trials asked for, if known.
    """
    counts: dict[str, int] = {}
    finished = total = 0
    best: TrialRecord | None = None
    for t in trials:
        state = TrialState(t.state)
        counts[state.label] = counts.get(state.label, 0) + 1
        total += 1
        finished += state.is_finished()
        if t.best is None or mode is None:
            continue
        if best is None or best.best is None or \
                (t.best > best.best if mode == "max" else t.best < best.best):
            best = t
    return SearchSummary(counts, finished, total, planned, _best(best))


def summarize_store(store: Store, *, mode: str | None,
                    planned: int | None = None) -> SearchSummary:
    """Summarize the search in ``store`` with two queries, whatever its number of trials.

    Says the same as :func:`summarize` of all its trials.
    """
    counts: dict[str, int] = {}
    finished = 0
    for stored, n in store.trial_counts().items():
        state = TrialState(stored)
        counts[state.label] = counts.get(state.label, 0) + n
        finished += n if state.is_finished() else 0
    best = store.best_trial(mode) if mode in ("max", "min") else None
    return SearchSummary(counts, finished, sum(counts.values()), planned, _best(best))


def _best(record: TrialRecord | None) -> dict[str, Any] | None:
    return None if record is None else {
        "trial": record.number, "value": record.best, "step": record.best_step,
        "config": record.params, "state": TrialState(record.state).label}
