"""How long a search has left: an estimate that moves smoothly, from what finished.

Trials run side by side, so the time left is the trials still to finish, divided among
the trials running at once, times how long a trial takes: each running trial counts
the part of it already done. The estimated end time is smoothed over time (not per
update: the panel updates several times a second, and per-update smoothing would
follow every jump within a second), so the estimate counts down steadily instead of
jumping with each trial that ends (a pruned trial ends early, a completed one late).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kale_ext.trial import TrialState

if TYPE_CHECKING:
    from kale_ext.store import TrialRecord

SMOOTHING_S = 10.0  # time constant (seconds) of the smoothed estimated end


@dataclass
class Eta:
    """Seconds left of a search of ``planned`` trials, updated from its trial records."""

    planned: int | None
    end: float | None = None  # the smoothed estimated end (wall-clock time)
    at: float | None = None  # when ``end`` was last updated

    def update(self, now: float, trials: Iterable[TrialRecord]) -> float | None:
        """Return the seconds left at ``now`` (None until a trial has finished)."""
        durations, running, finished = [], [], 0
        for t in trials:
            state = TrialState(t.state)
            started, ended = t.started, t.ended
            if state.is_finished():
                finished += 1
                if started is not None and ended is not None:
                    durations.append(max(0.0, ended - started))
            elif state is TrialState.RUNNING and started is not None:
                running.append(max(0.0, now - started))
        if not self.planned or not durations or finished >= self.planned:
            self.end = self.at = None
            return None
        per_trial = sum(durations) / len(durations)
        width = max(1, len(running))  # trials that run at once
        # Work left in trial-lengths: those not started, and the rest of those running.
        waiting = max(0, self.planned - finished - len(running))
        left_of_running = sum(max(0.0, per_trial - r) for r in running)
        raw = (waiting * per_trial + left_of_running) / width
        estimate = now + raw
        if self.end is None or self.at is None or not math.isfinite(self.end):
            self.end = estimate
        else:
            weight = 1.0 - math.exp(-max(0.0, now - self.at) / SMOOTHING_S)
            self.end += weight * (estimate - self.end)
        self.at = now
        return max(0.0, self.end - now)
