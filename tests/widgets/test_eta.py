"""The panel's estimate of the time left: steady, close to the truth, not the elapsed time."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

from kale_ext.search import TrialState
from kale_ext.widgets._eta import Eta


def _trials(now: float, *, planned: int, width: int, lengths: list[float]):
    """Trials run ``width`` at a time, trial n taking ``lengths[n]`` seconds."""
    out, free = [], [0.0] * width
    for n in range(planned):
        slot = min(range(width), key=free.__getitem__)
        start = free[slot]
        end = start + lengths[n]
        free[slot] = end
        if start > now:
            state, started, ended = TrialState.PENDING, None, None
        elif end > now:
            state, started, ended = TrialState.RUNNING, start, None
        else:
            state, started, ended = TrialState.COMPLETED, start, end
        out.append(SimpleNamespace(state=state.value, started=started, ended=ended))
    return out, max(free)


def test_the_estimate_counts_down_steadily_and_ends_near_the_truth():
    # Pruned trials end early, completed ones late: the ETA must not jump with each.
    lengths = [10.0 if n % 3 else 30.0 for n in range(24)]
    eta = Eta(24)
    shown = []
    end = _trials(0, planned=24, width=3, lengths=lengths)[1]
    for now in range(1, int(end)):
        trials, _ = _trials(now, planned=24, width=3, lengths=lengths)
        left = eta.update(float(now), trials)
        if left is not None:
            shown.append((now, left))
    assert shown, "an estimate once trials finish"
    for (t0, a), (t1, b) in itertools.pairwise(shown):
        assert b <= a + 0.25 * (t1 - t0) * 30, (t0, a, t1, b)  # no jump up by much
    # The old estimate (elapsed / finished * left) sat on the elapsed time for a stretch;
    # a countdown crosses the elapsed time once at most.
    assert sum(abs(left - now) <= 1 for now, left in shown) <= 2, shown
    # Halfway, within a third of the truth.
    now, left = shown[len(shown) // 2]
    assert abs(left - (end - now)) < (end - now) / 3, (now, left, end)


def test_no_estimate_before_a_trial_finished_or_after_all_did():
    eta = Eta(4)
    running = [SimpleNamespace(state=TrialState.RUNNING.value, started=0.0, ended=None)] * 2
    assert eta.update(5.0, running) is None
    done = [SimpleNamespace(state=TrialState.COMPLETED.value, started=0.0, ended=5.0)] * 4
    assert eta.update(6.0, done) is None
    assert Eta(None).update(6.0, done[:1]) is None
