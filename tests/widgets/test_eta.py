"""The panel's estimate of the time left: steady, close to the truth, not the elapsed time."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

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


def _shown(lengths: list[float], *, width: int, tick: float) -> tuple[list, float]:
    """The estimates a panel updating every ``tick`` seconds shows, and the true end."""
    planned = len(lengths)
    eta = Eta(planned)
    end = _trials(0, planned=planned, width=width, lengths=lengths)[1]
    shown = []
    for k in range(1, int(end / tick)):
        now = k * tick
        trials, _ = _trials(now, planned=planned, width=width, lengths=lengths)
        left = eta.update(now, trials)
        if left is not None:
            shown.append((now, left))
    return shown, end


# The panel updates about five times a second while a search reports; once a second is
# the slowest it goes. The estimate must not depend on that rate.
@pytest.mark.parametrize("tick", [1.0, 0.2])
def test_the_estimate_counts_down_steadily_and_ends_near_the_truth(tick):
    # Pruned trials end early, completed ones late: the ETA must not jump with each.
    lengths = [10.0 if n % 3 else 30.0 for n in range(24)]
    shown, end = _shown(lengths, width=3, tick=tick)
    assert shown, "an estimate once trials finish"
    for (t0, a), (t1, b) in itertools.pairwise(shown):
        assert b <= a + 0.25 * (t1 - t0) * 30, (t0, a, t1, b)  # no jump up by much
    # The old estimate (elapsed / finished * left) sat on the elapsed time for a stretch;
    # a countdown crosses the elapsed time once at most.
    assert sum(abs(left - now) <= tick for now, left in shown) <= 2 / tick, shown
    # Halfway, within a third of the truth.
    now, left = shown[len(shown) // 2]
    assert abs(left - (end - now)) < (end - now) / 3, (now, left, end)


def test_the_estimate_is_the_same_whatever_the_update_rate():
    # ASHA-like: most trials pruned after a rung, a few run to the end. Smoothing per
    # update followed each jump within a second at five updates a second (35 s left,
    # then 79 s, then 54 s); smoothed over time, the two rates agree.
    lengths = [3.0, 3.0, 27.0, 9.0, 3.0, 3.0, 3.0, 27.0, 3.0, 9.0] * 4
    slow = dict(_shown(lengths, width=4, tick=1.0)[0])
    fast = dict(_shown(lengths, width=4, tick=0.2)[0])
    common = [t for t in slow if round(t, 6) in {round(f, 6) for f in fast}]
    assert len(common) > 50
    fast_at = {round(t, 6): left for t, left in fast.items()}
    for t in common:
        assert abs(fast_at[round(t, 6)] - slow[t]) <= 0.15 * max(slow[t], 10), \
            (t, slow[t], fast_at[round(t, 6)])
    # Within any 2 s the shown time left moves at most 12 s off a plain countdown.
    shown = sorted(fast.items())
    for (t0, a), (t1, b) in itertools.pairwise(shown[::10]):
        assert abs(b - (a - (t1 - t0))) <= 12, (t0, a, t1, b)


def test_no_estimate_before_a_trial_finished_or_after_all_did():
    eta = Eta(4)
    running = [SimpleNamespace(state=TrialState.RUNNING.value, started=0.0, ended=None)] * 2
    assert eta.update(5.0, running) is None
    done = [SimpleNamespace(state=TrialState.COMPLETED.value, started=0.0, ended=5.0)] * 4
    assert eta.update(6.0, done) is None
    assert Eta(None).update(6.0, done[:1]) is None
