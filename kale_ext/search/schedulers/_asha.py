"""ASHA: asynchronous successive halving (Li et al., 2018, arXiv:1810.05934)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from kale_ext._errors import SearchError
from kale_ext.search.schedulers._base import Scheduler, check_number
from kale_ext.trial import CONTINUE, Action, Decision


class Rung:
    """The values trials had when they reached step ``t`` of one bracket.

    Attributes
    ----------
    bracket, index
        Which bracket, and the rung's position in it (0 = the lowest rung).
    t
        The rung's milestone: a trial is judged at its first report with ``step >= t``.
    values
        Trial number -> the value it reported there, in arrival order.
    """

    def __init__(self, bracket: int, index: int, t: float) -> None:
        self.bracket, self.index, self.t = bracket, index, t
        self.values: dict[int, float] = {}
        self._scores: dict[int, float] = {}
        self._sorted: list[float] = []  # scores, ascending

    def __repr__(self) -> str:
        return f"Rung(bracket={self.bracket}, index={self.index}, t={self.t}, " \
               f"values={self.values})"

    def record(self, trial: int, value: float, score: float) -> None:
        self.values[trial], self._scores[trial] = value, score
        bisect.insort(self._sorted, score)

    def remove(self, trial: int) -> None:
        if trial in self._scores:
            score = self._scores.pop(trial)
            del self.values[trial]
            self._sorted.pop(bisect.bisect_left(self._sorted, score))

    def cutoff(self, keep: int) -> float:
        """Return the ``keep``-th best score recorded here."""
        return self._sorted[-keep]


class ASHA(Scheduler):
    """Asynchronous successive halving.

    Bracket ``s`` has rungs at steps ``grace_period * reduction_factor**(s + k) < max_t``.
    When a trial's report first reaches a rung (``step >= t``), its value is recorded there
    and it continues only if it is among the best ``max(1, n // reduction_factor)`` of the
    ``n`` values recorded at that rung so far (itself included, ties in its favour); it is
    decided at arrival, never revisited. A NaN value is pruned at a rung. ``max_t`` is
    inclusive: a report with ``step >= max_t`` gets STOP ("reached max_t").

    Parameters
    ----------
    max_t
        The step at which every trial stops.
    grace_period
        The first rung: no trial is pruned before this step.
    reduction_factor
        Keep the best 1/reduction_factor at each rung (> 1).
    brackets
        Number of brackets; trials are assigned round-robin. More brackets hedge against
        a grace period too short to judge by.

    Attributes
    ----------
    rungs
        Every :class:`Rung`, bracket by bracket, lowest first.
    """

    type_name = "ASHA"

    def __init__(self, max_t: float, grace_period: float = 1, reduction_factor: float = 3,
                 brackets: int = 1) -> None:
        super().__init__()
        check_number("max_t", max_t, low=0)
        check_number("grace_period", grace_period, low=0)
        check_number("reduction_factor", reduction_factor, low=1)
        check_number("brackets", brackets, low=1, integral=True, inclusive=True)
        if grace_period >= max_t:
            raise SearchError(
                f"grace_period={grace_period!r} must be below max_t={max_t!r}: no trial could "
                "be judged before it stops."
            )
        self.max_t, self.grace_period = max_t, grace_period
        self.reduction_factor, self.n_brackets = reduction_factor, int(brackets)
        possible = len(self._milestones(0)) + 1
        if self.n_brackets > possible:
            raise SearchError(
                f"brackets={brackets} is too many: with max_t={max_t}, grace_period="
                f"{grace_period} and reduction_factor={reduction_factor} at most {possible} "
                "brackets differ."
            )
        self.brackets: list[list[Rung]] = [
            [Rung(b, k, t) for k, t in enumerate(self._milestones(b))]
            for b in range(self.n_brackets)]
        self._bracket_of: dict[int, int] = {}

    def _milestones(self, bracket: int) -> list[float]:
        out, exponent = [], bracket
        while (t := self.grace_period * self.reduction_factor ** exponent) < self.max_t:
            out.append(t)
            exponent += 1
        return out

    @property
    def rungs(self) -> list[Rung]:
        return [rung for bracket in self.brackets for rung in bracket]

    def bracket_of(self, trial: int) -> int | None:
        """Return the bracket ``trial`` was assigned to, or None before it was added."""
        return self._bracket_of.get(trial)

    def _assign(self, trial: int) -> int:
        bracket = len(self._bracket_of) % self.n_brackets
        self._bracket_of[trial] = bracket
        return bracket

    def on_trial_add(self, trial: int, params: Mapping[str, Any]) -> None:
        super().on_trial_add(trial, params)
        if trial not in self._bracket_of:
            self._assign(trial)

    def _forget(self, trial: int) -> None:
        for rung in self.rungs:
            rung.remove(trial)

    def _decide(self, trial: int, step: int, value: float, score: float) -> Decision:
        bracket = self._bracket_of.get(trial)
        if bracket is None:
            bracket = self._assign(trial)
        for rung in self.brackets[bracket]:
            if step < rung.t or trial in rung.values:
                continue
            rung.record(trial, value, score)
            if self.is_nan(value):
                return self._prune(rung, f"{self._name} is NaN")
            n = len(rung.values)
            keep = max(1, math.floor(n / self.reduction_factor + 1e-9))
            cutoff = rung.cutoff(keep)
            if score < cutoff:
                return self._prune(rung, (
                    f"{self._name}={value:.6g} is not in the top 1/{self.reduction_factor:g} "
                    f"({keep} of {n}) recorded there (cutoff {self.value_of(cutoff):.6g})"))
        if step >= self.max_t:
            return Decision(Action.STOP, f"reached max_t={self.max_t:g} at step {step}")
        return CONTINUE

    def _prune(self, rung: Rung, why: str) -> Decision:
        where = f" of bracket {rung.bracket}" if self.n_brackets > 1 else ""
        return Decision(Action.PRUNE, f"pruned at rung {rung.index} (t={rung.t:g}){where}: {why}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "max_t": self.max_t, "grace_period": self.grace_period,
                "reduction_factor": self.reduction_factor, "brackets": self.n_brackets}
