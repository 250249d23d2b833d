"""Schedulers on planted learning curves: who stops, where, and why."""

from __future__ import annotations

import collections
import json
import math
import re
from collections.abc import Callable

import pytest

from kale_ext._errors import SearchError
from kale_ext.search import (
    ASHA,
    FIFO,
    PBT,
    Action,
    Decision,
    Hyperband,
    MedianStopping,
    Scheduler,
    TrialState,
    choice,
    loguniform,
    scheduler_from_dict,
    uniform,
)
from kale_ext.search import int as int_

RUNG = re.compile(r"rung (\d+) \(t=(\d+)\)")

Curve = Callable[[int], float]


def run_round_robin(scheduler: Scheduler, curves: dict[int, Curve], max_step: int
                    ) -> dict[int, Decision]:
    """Every live trial reports step 1, then step 2, ...; returns each trial's final decision."""
    for trial in curves:
        scheduler.on_trial_add(trial, {})
    alive, final = set(curves), {}
    for step in range(1, max_step + 1):
        for trial in sorted(alive):
            decision = scheduler.on_report(trial, step, curves[trial](step))
            if decision.action is not Action.CONTINUE:
                final[trial] = decision
                alive.discard(trial)
    return final


def planted() -> dict[int, Curve]:
    curves: dict[int, Curve] = {g: (lambda t, g=g: (1.0 - 0.1 * g) / (t + 1)) for g in range(3)}
    curves[3] = lambda t: 0.1 if t < 3 else 5.0  # looks best at first, then diverges
    curves.update({b: (lambda t, b=b: 3.0 + b) for b in range(4, 9)})  # bad throughout
    return curves


def test_asha_prunes_planted_bad_curves_at_the_expected_rungs() -> None:
    asha = ASHA(max_t=27, grace_period=1, reduction_factor=3)
    asha.setup("val_loss", "min")
    assert [rung.t for rung in asha.rungs] == [1, 3, 9]
    final = run_round_robin(asha, planted(), 30)
    rungs = {t: RUNG.search(d.reason).groups() for t, d in final.items()  # type: ignore[union-attr]
             if d.action is Action.PRUNE}
    assert rungs == {**{b: ("0", "1") for b in range(4, 9)}, 3: ("1", "3")}
    for good in range(3):
        assert final[good].action is Action.STOP
        assert final[good].reason == "reached max_t=27 at step 27"
    assert "val_loss=5 is not in the top 1/3 (1 of 4)" in final[3].reason
    assert list(asha.rungs[0].values) == list(range(9))
    assert set(asha.rungs[1].values) == {0, 1, 2, 3}
    assert set(asha.rungs[2].values) == {0, 1, 2}


def test_asha_same_curves_in_max_mode() -> None:
    asha = ASHA(max_t=27)
    asha.setup("acc", "max")
    final = run_round_robin(asha, {t: (lambda s, c=c: -c(s)) for t, c in planted().items()}, 30)
    assert sorted(t for t, d in final.items() if d.action is Action.PRUNE) == [3, 4, 5, 6, 7, 8]


def test_asha_keeps_the_top_third_and_cutoff() -> None:
    asha = ASHA(max_t=100, grace_period=10, reduction_factor=3)
    asha.setup("loss", "min")
    values = [5.0, 4.0, 3.0, 9.0, 8.0, 1.0, 7.0]
    actions = [asha.on_report(i, 10, v).action for i, v in enumerate(values)]
    # n=1..3 keep 1 (so each new best goes on), n=6 keeps 2, so 1.0 is kept.
    assert actions == [Action.CONTINUE] * 3 + [Action.PRUNE] * 2 + [Action.CONTINUE, Action.PRUNE]
    assert asha.rungs[0].values == dict(enumerate(values))


def test_asha_max_t_is_inclusive_and_nan_is_pruned() -> None:
    asha = ASHA(max_t=4, grace_period=1, reduction_factor=2)
    asha.setup("loss", "min")
    assert [r.t for r in asha.rungs] == [1, 2]
    assert asha.on_report(0, 3, 1.0).action is Action.CONTINUE  # records at rungs 1 and 2
    assert set(asha.rungs[1].values) == {0}
    assert asha.on_report(0, 4, 1.0).action is Action.STOP
    decision = asha.on_report(1, 1, math.nan)
    assert decision.action is Action.PRUNE and "loss is NaN" in decision.reason


def test_asha_repeats_final_decisions_and_restart_forgets() -> None:
    asha = ASHA(max_t=10, grace_period=1)
    asha.setup("loss", "min")
    asha.on_report(0, 1, 1.0)
    asha.on_report(1, 1, 2.0)
    pruned = asha.on_report(2, 1, 3.0)
    assert pruned.action is Action.PRUNE
    assert asha.on_report(2, 2, 0.0) == pruned  # in-flight reports get the same answer
    asha.on_trial_add(2, {"lr": 0.1})  # restarted with other params: judged again
    assert 2 not in asha.rungs[0].values
    assert asha.on_report(2, 1, 0.5).action is Action.CONTINUE


def test_asha_brackets_round_robin() -> None:
    asha = ASHA(max_t=27, brackets=3)
    asha.setup("loss", "min")
    assert [[r.t for r in b] for b in asha.brackets] == [[1, 3, 9], [3, 9], [9]]
    for trial in range(6):
        asha.on_trial_add(trial, {})
    assert [asha.bracket_of(t) for t in range(6)] == [0, 1, 2, 0, 1, 2]
    asha.on_report(0, 1, 1.0)
    asha.on_report(3, 1, 0.5)
    decision = asha.on_report(6, 1, 9.0)  # never added: assigned on its first report
    assert asha.bracket_of(6) == 0 and "rung 0 (t=1) of bracket 0" in decision.reason
    with pytest.raises(SearchError, match="brackets=5 is too many"):
        ASHA(max_t=27, brackets=5)


def test_hyperband_allocation_and_brackets() -> None:
    hb = Hyperband(max_t=27, reduction_factor=3)
    hb.setup("acc", "max")
    assert [[r.t for r in b] for b in hb.brackets] == [[1, 3, 9], [3, 9], [9], []]
    assert hb.weights == [27, 12, 6, 4]
    for trial in range(49):
        hb.on_trial_add(trial, {})
    counts = collections.Counter(hb.bracket_of(t) for t in range(49))
    assert counts == {0: 27, 1: 12, 2: 6, 3: 4}
    last = next(t for t in range(49) if hb.bracket_of(t) == 3)
    assert all(hb.on_report(last, s, -1e9).action is Action.CONTINUE for s in range(1, 27))
    assert hb.on_report(last, 27, 0.0).action is Action.STOP


def test_median_stopping_prunes_a_bad_late_trial() -> None:
    med = MedianStopping(grace_period=2, min_samples=3)
    med.setup("val_loss", "min")
    for trial in range(3):  # three finished, decent trials
        med.on_trial_add(trial, {})
        assert all(med.on_report(trial, s, 1.0 / s + 0.1 * trial).action is Action.CONTINUE
                   for s in range(1, 6))
    med.on_trial_add(3, {})
    assert med.on_report(3, 1, 9.0).action is Action.CONTINUE  # grace period
    decision = med.on_report(3, 2, 8.0)
    assert decision.action is Action.PRUNE
    assert "step 2" in decision.reason and "median 0.85" in decision.reason
    assert med.running_average(0, 2) == pytest.approx(-0.75)  # scores: higher is better
    med.on_trial_add(4, {})
    assert [med.on_report(4, s, 0.9 / s).action for s in (1, 2, 3)] == [Action.CONTINUE] * 3


def test_median_stopping_needs_min_samples_and_compare_average() -> None:
    med = MedianStopping(grace_period=1, min_samples=3, compare="average")
    med.setup("acc", "max")
    for trial in range(2):
        for s in range(1, 4):
            med.on_report(trial, s, 0.9)
    assert med.on_report(2, 1, 0.0).action is Action.CONTINUE  # only 2 others
    med.on_report(5, 1, 0.9)
    med.on_report(5, 2, 0.9)
    # Best so far would be 1.0, but the running average (0.0 + 1.0) / 2 is below 0.9.
    decision = med.on_report(2, 2, 1.0)
    assert decision.action is Action.PRUNE and "running average" in decision.reason


def pbt(**kwargs: object) -> PBT:
    scheduler = PBT(perturbation_interval=2, quantile=0.25, seed=0, **{
        "hyperparam_mutations": {"lr": loguniform(1e-4, 1e-1), "bs": [16, 32, 64, 128]},
        **kwargs})  # type: ignore[arg-type]
    scheduler.setup("acc", "max")
    return scheduler


def test_pbt_bottom_quantile_exploits_the_top() -> None:
    scheduler = pbt()
    for trial in range(8):
        scheduler.on_trial_add(trial, {"lr": 0.01 * (trial + 1) / 8, "bs": 32,
                                       "opt": {"momentum": 0.9}})
    decisions = {}
    for trial in range(8):
        assert scheduler.on_report(trial, 1, trial / 10).action is Action.CONTINUE
    for trial in range(8):
        decisions[trial] = scheduler.on_report(trial, 2, trial / 10)
    exploited = {t: d for t, d in decisions.items() if d.action is Action.EXPLOIT}
    assert set(exploited) == {0, 1}  # ceil(8 * 0.25) = 2 in the bottom quantile
    for trial, decision in exploited.items():
        source = decision.source_trial
        assert source in (6, 7)
        source_params = {"lr": 0.01 * (source + 1) / 8, "bs": 32}  # type: ignore[operator]
        new = decision.params
        assert new["opt"] == {"momentum": 0.9}  # not mutated
        assert new["bs"] in (16, 32, 64, 128)
        assert 1e-4 <= new["lr"] <= 1e-1
        assert f"exploiting trial {source}" in decision.reason
        assert f"acc={trial / 10:g} is in the bottom 25% of 8 trials" in decision.reason
        assert scheduler.params[trial] == new
        resampled = not any(math.isclose(new["lr"], source_params["lr"] * f) for f in (0.8, 1.2))
        assert resampled or new["lr"] != source_params["lr"]
    # Trial 0 goes on from its source's checkpoint (step 1): next check at step 1 + 2.
    assert scheduler.on_report(0, 2, 0.0).action is Action.CONTINUE
    assert scheduler.on_report(0, 3, 0.0).action is Action.EXPLOIT


def test_pbt_explore_rules() -> None:
    scheduler = pbt(resample_probability=0.0)
    for _ in range(20):
        new, changes = scheduler.explore({"lr": 0.01, "bs": 32, "other": 1})
        assert any(math.isclose(new["lr"], v) for v in (0.008, 0.012))
        assert new["bs"] in (16, 64) and new["other"] == 1
        assert len(changes) == 2
    assert scheduler.explore({"lr": 0.1, "bs": 128})[0]["lr"] <= 0.1  # clipped
    ints = PBT(1, hyperparam_mutations={"n": int_(1, 8)}, resample_probability=0.0, seed=1)
    assert {ints.explore({"n": 1})[0]["n"] for _ in range(20)} <= {1, 2}
    assert {ints.explore({"n": 5})[0]["n"] for _ in range(20)} == {4, 6}


def test_pbt_from_space_and_failed_sources() -> None:
    space = {"lr": loguniform(1e-4, 1e-1), "opt": choice([{"m": uniform(0, 1)}, "adam"]),
             "act": choice(["relu", "tanh"]), "epochs": 5}
    scheduler = PBT(1, space=space, seed=0)
    assert set(scheduler.mutations) == {"lr", "act"}
    scheduler.setup("loss", "min")
    for trial in range(4):
        scheduler.on_trial_add(trial, {"lr": 0.01, "opt": "adam", "act": "relu", "epochs": 5})
    scheduler.on_report(3, 1, 0.1)
    scheduler.on_trial_end(3, TrialState.FAILED)
    scheduler.on_report(2, 1, 0.2)
    scheduler.on_report(1, 1, 0.3)
    decision = scheduler.on_report(0, 1, 0.9)
    assert decision.action is Action.EXPLOIT and decision.source_trial == 2
    with pytest.raises(SearchError, match=r"'lr'.*outside"):
        PBT(1, hyperparam_mutations={"lr": [0.5]}, space=space)
    with pytest.raises(SearchError, match="conditional"):
        PBT(1, hyperparam_mutations={"opt": None}, space=space)
    with pytest.raises(SearchError, match="hyperparam_mutations"):
        PBT(1)


@pytest.mark.parametrize("scheduler", [
    FIFO(), ASHA(max_t=20, grace_period=2, reduction_factor=2, brackets=2),
    Hyperband(max_t=50, reduction_factor=4, grace_period=2), MedianStopping(3, 5, "average"),
    PBT(4, 0.5, {"lr": loguniform(1e-3, 1.0), "bs": [1, 2]}, 0.1,
        {"lr": loguniform(1e-4, 1.0), "bs": int_(1, 4)}, seed=5),
])
def test_to_dict_from_dict_round_trip(scheduler: Scheduler) -> None:
    data = json.loads(json.dumps(scheduler.to_dict(), allow_nan=False))
    again = scheduler_from_dict(data)
    assert type(again) is type(scheduler) and again.to_dict() == scheduler.to_dict()
    assert data["type"] == type(scheduler).__name__


@pytest.mark.parametrize(("make", "match"), [
    (lambda: ASHA(max_t=0), "max_t must be a number > 0"),
    (lambda: ASHA(max_t=10, grace_period=10), "grace_period=10 must be below max_t=10"),
    (lambda: ASHA(max_t=10, reduction_factor=1), "reduction_factor must be a number > 1"),
    (lambda: ASHA(max_t=10, brackets=1.5), "brackets must be an integer"),
    (lambda: Hyperband(max_t="9"), "max_t must be a number"),
    (lambda: MedianStopping(min_samples=0), "min_samples must be an integer >= 1"),
    (lambda: MedianStopping(compare="mean"), "compare must be"),
    (lambda: PBT(0, hyperparam_mutations={"a": [1]}), "perturbation_interval"),
    (lambda: PBT(1, quantile=0.6, hyperparam_mutations={"a": [1]}), "quantile"),
    (lambda: PBT(1, hyperparam_mutations={"a": []}), "non-empty list"),
    (lambda: PBT(1, hyperparam_mutations={"a": uniform(1, 0)}), "low < high"),
    (lambda: scheduler_from_dict({"type": "Nope"}), "must be one of"),
    (lambda: scheduler_from_dict({"type": "ASHA", "max_t": 5, "eta": 2}), "Bad ASHA"),
])
def test_bad_arguments(make: Callable[[], object], match: str) -> None:
    with pytest.raises(SearchError, match=match):
        make()


def test_report_before_setup_and_bad_mode() -> None:
    with pytest.raises(SearchError, match=r"call setup\(metric, mode\) first"):
        FIFO().on_report(0, 1, 1.0)
    with pytest.raises(SearchError, match="mode must be 'min' or 'max'"):
        ASHA(max_t=5).setup("loss", "minimize")
