"""Asynchronous Hyperband (Li et al., 2017, JMLR 18(185); async form: Li et al., 2018)."""

from __future__ import annotations

import math
from typing import Any

from kale_ext.search.schedulers._asha import ASHA


class Hyperband(ASHA):
    """ASHA brackets with every grace period Hyperband hedges over.

    Bracket ``s`` starts judging at ``grace_period * reduction_factor**s``; the last bracket
    has no rung, so its trials always run to ``max_t``. New trials go to the brackets in
    Hyperband's proportions: bracket ``s`` with ``h`` rungs gets a share proportional to
    ``ceil(B / (h + 1)) * reduction_factor**h`` (``B`` brackets), dealt by smooth weighted
    round-robin, so the assignment is deterministic.

    Parameters
    ----------
    max_t
        The step at which every trial stops (inclusive, as in :class:`ASHA`).
    reduction_factor
        Keep the best 1/reduction_factor at each rung (> 1).
    grace_period
        The lowest rung of the most aggressive bracket.
    """

    type_name = "Hyperband"

    def __init__(self, max_t: float, reduction_factor: float = 3,
                 grace_period: float = 1) -> None:
        probe = ASHA(max_t, grace_period, reduction_factor)
        super().__init__(max_t, grace_period, reduction_factor,
                         brackets=len(probe._milestones(0)) + 1)
        n = self.n_brackets
        self.weights = [math.ceil(n / (len(b) + 1) * reduction_factor ** len(b))
                        for b in self.brackets]
        self._counts = [0] * n

    def _assign(self, trial: int) -> int:
        # The bracket furthest below its share gets the trial; ties go to the lower bracket.
        bracket = min(range(self.n_brackets),
                      key=lambda b: ((self._counts[b] + 1) / self.weights[b], b))
        self._counts[bracket] += 1
        self._bracket_of[trial] = bracket
        return bracket

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "max_t": self.max_t,
                "reduction_factor": self.reduction_factor, "grace_period": self.grace_period}
