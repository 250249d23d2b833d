"""The one read model of a search: counts by state, progress and the best trial."""

from __future__ import annotations

from kale_ext.search import SearchSummary, summarize
from kale_ext.store import TrialRecord
from kale_ext.trial import TrialState


def record(number: int, state: TrialState, best: float | None = None) -> TrialRecord:
    return TrialRecord(number, state, params={"lr": number / 10}, best=best,
                       best_step=None if best is None else number)


TRIALS = [record(0, TrialState.COMPLETED, 0.5), record(1, TrialState.RUNNING, 0.9),
          record(2, TrialState.PRUNED, 0.2), record(3, TrialState.PENDING),
          record(4, TrialState.FAILED, 0.9)]


def test_counts_progress_and_best_by_mode():
    summary = summarize(TRIALS, mode="max", planned=8)
    assert summary.counts == {"completed": 1, "running": 1, "pruned": 1, "pending": 1,
                              "failed": 1}
    assert (summary.finished, summary.total, summary.progress) == (3, 5, 3 / 8)
    # A tie keeps the first trial that reached the value.
    assert summary.best == {"trial": 1, "value": 0.9, "step": 1, "config": {"lr": 0.1},
                            "state": "running"}
    assert summarize(TRIALS, mode="min").best["trial"] == 2
    assert summary.describe() == "1 completed, 1 failed, 1 pending, 1 pruned, 1 running"


def test_an_empty_search_and_one_without_an_objective():
    empty = summarize([], mode="max")
    assert empty == SearchSummary() and empty.describe() == "no trials yet"
    assert empty.progress is None and empty.best is None
    assert summarize(TRIALS, mode=None).best is None
