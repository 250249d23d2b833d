"""Median stopping rule (Golovin et al., 2017, "Google Vizier", KDD)."""

from __future__ import annotations

import bisect
import statistics
from typing import Any

from kale_ext._errors import SearchError
from kale_ext.search.schedulers._base import Scheduler, check_number
from kale_ext.trial import CONTINUE, Action, Decision

_BIG = 1e300  # scores are clipped to +-_BIG for averages, so inf and NaN cannot poison a sum


class MedianStopping(Scheduler):
    """Prune a trial doing worse than the median of the others at the same step.

    At a report at step ``t >= grace_period``, each other trial that has reached step ``t``
    contributes the running average of its values at steps ``<= t``; with at least
    ``min_samples`` of them, the trial is pruned when its best value so far (or its own
    running average, ``compare="average"``) is strictly worse than their median.

    Parameters
    ----------
    grace_period
        No trial is pruned before this step.
    min_samples
        How many other trials must have reached the step before anyone is pruned.
    compare
        ``"best"`` (Vizier's rule) or ``"average"``: what of the trial is compared.
    """

    type_name = "MedianStopping"

    def __init__(self, grace_period: float = 1, min_samples: int = 3,
                 compare: str = "best") -> None:
        super().__init__()
        check_number("grace_period", grace_period, low=0, inclusive=True)
        check_number("min_samples", min_samples, low=1, integral=True, inclusive=True)
        if compare not in ("best", "average"):
            raise SearchError(f"compare must be 'best' or 'average', but got {compare!r}.")
        self.grace_period, self.min_samples, self.compare = grace_period, int(min_samples), compare
        self._steps: dict[int, list[int]] = {}
        self._sums: dict[int, list[float]] = {}  # cumulative clipped scores
        self._best: dict[int, list[float]] = {}  # running maximum of scores

    def _forget(self, trial: int) -> None:
        for table in (self._steps, self._sums, self._best):
            table.pop(trial, None)

    def _record(self, trial: int, step: int, score: float) -> None:
        steps = self._steps.setdefault(trial, [])
        sums, best = self._sums.setdefault(trial, []), self._best.setdefault(trial, [])
        if steps and step <= steps[-1]:  # restarted from an earlier checkpoint
            cut = bisect.bisect_left(steps, step)
            del steps[cut:], sums[cut:], best[cut:]
        clipped = min(max(score, -_BIG), _BIG)
        steps.append(step)
        sums.append((sums[-1] if sums else 0.0) + clipped)
        best.append(max(best[-1], score) if best else score)

    def running_average(self, trial: int, step: int) -> float | None:
        """Mean score of ``trial`` over steps ``<= step``, or None if it has not reached it."""
        steps = self._steps.get(trial)
        if not steps or steps[-1] < step:
            return None
        i = bisect.bisect_right(steps, step)
        return self._sums[trial][i - 1] / i if i else None

    def _decide(self, trial: int, step: int, value: float, score: float) -> Decision:
        self._record(trial, step, score)
        if step < self.grace_period:
            return CONTINUE
        others = [avg for other in self._steps if other != trial
                  if (avg := self.running_average(other, step)) is not None]
        if len(others) < self.min_samples:
            return CONTINUE
        median = statistics.median(others)
        if self.compare == "best":
            mine, label = self._best[trial][-1], "best"
        else:
            average = self.running_average(trial, step)
            mine, label = (score if average is None else average), "running average"
        if mine < median:
            return Decision(Action.PRUNE, (
                f"median stopping at step {step}: {label} {self._name} "
                f"{self.value_of(mine):.6g} is worse than the median {self.value_of(median):.6g}"
                f" of {len(others)} other trials' running averages"))
        return CONTINUE

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "grace_period": self.grace_period,
                "min_samples": self.min_samples, "compare": self.compare}
