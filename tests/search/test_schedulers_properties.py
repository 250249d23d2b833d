"""Property tests of the schedulers: robustness, determinism, symmetry and ASHA's rule."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    loguniform,
)
from kale_ext.search import int as int_

FACTORIES: dict[str, Callable[[], Scheduler]] = {
    "fifo": FIFO,
    "asha": lambda: ASHA(max_t=20, grace_period=1, reduction_factor=3),
    "asha-brackets": lambda: ASHA(max_t=30, grace_period=2, reduction_factor=2, brackets=3),
    "hyperband": lambda: Hyperband(max_t=27, reduction_factor=3),
    "median": lambda: MedianStopping(grace_period=2, min_samples=2),
    "median-average": lambda: MedianStopping(grace_period=0, min_samples=1, compare="average"),
    "pbt": lambda: PBT(perturbation_interval=2, quantile=0.5, seed=3, hyperparam_mutations={
        "lr": loguniform(1e-4, 1.0), "n": int_(1, 5), "bs": [8, 16, 32]}),
}

trials = st.integers(0, 6)
values = st.one_of(st.floats(-100, 100, allow_nan=False), st.just(math.nan),
                   st.sampled_from([math.inf, -math.inf, 0.0]))
params = st.fixed_dictionaries({"lr": st.sampled_from([1e-3, 0.1]), "n": st.integers(1, 5),
                                "bs": st.sampled_from([8, 16, 32])})
ops = st.lists(st.one_of(
    st.tuples(st.just("add"), trials, params),
    st.tuples(st.just("report"), trials, st.integers(-2, 40), values),
    st.tuples(st.just("end"), trials, st.sampled_from(list(TrialState))),
), max_size=60)


def replay(scheduler: Scheduler, sequence: list[tuple[Any, ...]], mode: str,
           sign: float = 1.0) -> list[Decision]:
    scheduler.setup("metric", mode)
    decisions = []
    for op in sequence:
        if op[0] == "add":
            scheduler.on_trial_add(op[1], op[2])
        elif op[0] == "report":
            decisions.append(scheduler.on_report(op[1], op[2], sign * op[3]))
        else:
            scheduler.on_trial_end(op[1], op[2])
    return decisions


def shape(decision: Decision) -> tuple[Any, ...]:
    """What must not depend on the sign convention: action, source, params, rung."""
    rung = re.search(r"rung (\d+) \(t=[\d.]+\)( of bracket \d+)?", decision.reason)
    return (decision.action, decision.source_trial, decision.params,
            rung.group(0) if rung else None)


@pytest.mark.parametrize("name", FACTORIES)
@settings(max_examples=60, deadline=None)
@given(sequence=ops, mode=st.sampled_from(["min", "max"]))
def test_any_call_sequence_is_handled_deterministically(name: str, sequence: list[Any],
                                                       mode: str) -> None:
    first = replay(FACTORIES[name](), sequence, mode)
    assert first == replay(FACTORIES[name](), sequence, mode)
    for decision in first:
        assert isinstance(decision, Decision)
        if decision.action is Action.EXPLOIT:
            assert decision.source_trial is not None
        if name == "fifo":
            assert decision.action is Action.CONTINUE


@pytest.mark.parametrize("name", FACTORIES)
@settings(max_examples=60, deadline=None)
@given(sequence=ops)
def test_min_max_symmetry(name: str, sequence: list[Any]) -> None:
    as_min = replay(FACTORIES[name](), sequence, "min")
    as_max = replay(FACTORIES[name](), sequence, "max", sign=-1.0)
    assert [shape(d) for d in as_min] == [shape(d) for d in as_max]


finite = st.floats(-100, 100, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(reports=st.lists(st.tuples(st.integers(0, 15), st.integers(1, 30), finite), max_size=80),
       mode=st.sampled_from(["min", "max"]), rf=st.sampled_from([2, 3, 4]))
def test_asha_never_prunes_the_best_trial_at_a_rung(reports: list[tuple[int, int, float]],
                                                   mode: str, rf: int) -> None:
    asha = ASHA(max_t=30, grace_period=1, reduction_factor=rf)
    asha.setup("m", mode)
    pruned_at: dict[int, int] = {}
    for trial, step, value in reports:
        decision = asha.on_report(trial, step, value)
        if decision.action is Action.PRUNE and trial not in pruned_at:
            match = re.search(r"rung (\d+)", decision.reason)
            assert match
            pruned_at[trial] = int(match.group(1))
    better = max if mode == "max" else min
    for trial, index in pruned_at.items():
        rung = asha.rungs[index]
        assert rung.values[trial] != better(rung.values.values())


@settings(max_examples=100, deadline=None)
@given(raw=st.lists(finite, min_size=1, max_size=40, unique=True),
       mode=st.sampled_from(["min", "max"]), rf=st.sampled_from([2, 3, 5]))
def test_asha_promotions_by_arrival_order(raw: list[float], mode: str, rf: int) -> None:
    worst_last = sorted(raw, reverse=(mode == "max"))  # increasingly bad
    asha = ASHA(max_t=100, grace_period=1, reduction_factor=rf)
    asha.setup("m", mode)
    promoted = [asha.on_report(i, 1, v).action is Action.CONTINUE
                for i, v in enumerate(worst_last)]
    assert sum(promoted) <= math.ceil(len(raw) / rf)
    assert promoted[0]
    best_last = list(reversed(worst_last))  # every arrival is the best so far: all go on
    asha = ASHA(max_t=100, grace_period=1, reduction_factor=rf)
    asha.setup("m", mode)
    assert all(asha.on_report(i, 1, v).action is Action.CONTINUE
               for i, v in enumerate(best_last))


@settings(max_examples=60, deadline=None)
@given(sequence=ops)
def test_pbt_exploits_only_from_better_trials(sequence: list[Any]) -> None:
    scheduler = FACTORIES["pbt"]()
    scheduler.setup("metric", "max")
    for op in sequence:
        if op[0] == "add":
            scheduler.on_trial_add(op[1], op[2])
        elif op[0] == "end":
            scheduler.on_trial_end(op[1], op[2])
        else:
            decision = scheduler.on_report(op[1], op[2], op[3])
            if decision.action is Action.EXPLOIT:
                assert decision.source_trial != op[1]
                new = decision.params
                if "lr" in new:
                    assert 1e-4 <= new["lr"] <= 1.0 and 1 <= new["n"] <= 5
                    assert new["bs"] in (8, 16, 32)
