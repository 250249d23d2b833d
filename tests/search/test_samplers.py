"""Samplers through Optuna's ask/tell: every algorithm, grids, conditional spaces, resume."""

from __future__ import annotations

import json
import statistics
from typing import Any

import pytest

from kale_ext._errors import SearchError, SpaceError
from kale_ext.search import (
    ALGORITHMS,
    Space,
    TrialState,
    choice,
    grid,
    loguniform,
    make_sampler,
    uniform,
)
from kale_ext.search import int as int_

SAMPLING = [a for a in ALGORITHMS if a != "grid"]
SPACE = Space({
    "lr": loguniform(1e-4, 1e-1), "dropout": uniform(0.0, 0.6), "units": int_(8, 64, step=8),
    "depth": int_(1, 16, log=True), "act": choice(["relu", "tanh"]), "epochs": 2,
    "opt": choice([{"name": "SGD", "momentum": uniform(0.0, 0.9)}, {"name": "Adam"}]),
})


def quadratic(config: dict[str, Any]) -> float:
    return (config["x"] - 0.3) ** 2


@pytest.mark.parametrize("algorithm", SAMPLING)
def test_configs_in_range_and_tell_every_state(algorithm: str) -> None:
    sampler = make_sampler(algorithm, SPACE, mode="min", seed=3)
    asked = [sampler.ask() for _ in range(4)]  # asynchronous: several asked before any tell
    states = [TrialState.COMPLETED, TrialState.PRUNED, TrialState.STOPPED, TrialState.FAILED]
    for suggestion, state in zip(asked, states, strict=True):
        assert SPACE.validate_config(suggestion.config) == suggestion.config
        json.dumps(suggestion.config, allow_nan=False)
        sampler.tell(suggestion.number, suggestion.config["lr"], state, step=2)
    for _ in range(8):
        suggestion = sampler.ask()
        SPACE.validate_config(suggestion.config)
        sampler.tell(suggestion.number, suggestion.config["dropout"], TrialState.COMPLETED)
    assert len({s.number for s in asked}) == 4
    assert sampler.remaining() is None
    trials = sampler.study.trials  # type: ignore[attr-defined]
    assert [t.state.name for t in trials[:4]] == ["COMPLETE", "PRUNED", "PRUNED", "FAIL"]
    assert trials[1].value == asked[1].config["lr"]  # a pruned trial keeps its last value


@pytest.mark.parametrize("algorithm", SAMPLING)
def test_conditional_space_samples_only_the_active_branch(algorithm: str) -> None:
    sampler = make_sampler(algorithm, SPACE, mode="max", seed=1)
    branches = set()
    for _ in range(12):
        suggestion = sampler.ask()
        opt = suggestion.config["opt"]
        branches.add(opt["name"])
        expected = {"name", "momentum"} if opt["name"] == "SGD" else {"name"}
        assert set(opt) == expected
        assert {k for k in suggestion.flat_params if k.startswith("opt.")} == \
            {f"opt.{k}" for k in expected}
        sampler.tell(suggestion.number, 1.0, TrialState.COMPLETED)
    assert branches == {"SGD", "Adam"}


def test_seeded_samplers_repeat() -> None:
    def run() -> list[dict[str, Any]]:
        sampler = make_sampler("tpe", SPACE, mode="min", seed=7)
        out = []
        for _ in range(12):
            s = sampler.ask()
            sampler.tell(s.number, s.config["dropout"], TrialState.COMPLETED)
            out.append(s.config)
        return out
    assert run() == run()


def test_tpe_beats_random_on_a_quadratic() -> None:
    space = Space({"x": uniform(-5.0, 5.0)})

    def best(algorithm: str, seed: int) -> float:
        sampler = make_sampler(algorithm, space, mode="min", seed=seed, n_startup_trials=5) \
            if algorithm == "tpe" else make_sampler(algorithm, space, mode="min", seed=seed)
        values = []
        for _ in range(25):
            s = sampler.ask()
            values.append(quadratic(s.config))
            sampler.tell(s.number, values[-1], TrialState.COMPLETED)
        return min(values)

    seeds = range(5)  # fixed seeds: deterministic, so not flaky
    tpe = statistics.mean(best("tpe", s) for s in seeds)
    rnd = statistics.mean(best("random", s) for s in seeds)
    assert tpe < rnd


def test_grid_enumerates_exactly_the_product() -> None:
    space = Space({"a": grid([1, 2, 3]), "b": choice(["x", "y"]), "n": int_(0, 2),
                   "sub": choice([{"k": grid([0.1, 0.2])}, "none"]), "c": 1})
    sampler = make_sampler("grid", space, mode="max")
    assert sampler.remaining() == space.grid_size() == 3 * 2 * 3 * 3
    seen = []
    while sampler.remaining():
        s = sampler.ask()
        seen.append(json.dumps(s.config, sort_keys=True))
        sampler.tell(s.number, 0.0, TrialState.COMPLETED)
    assert sorted(seen) == sorted(json.dumps(c, sort_keys=True) for c in space.grid())
    assert sampler.remaining() == 0
    with pytest.raises(SearchError, match="exhausted"):
        sampler.ask()


def test_grid_enqueue_and_restore_are_not_repeated() -> None:
    space = Space({"a": grid([1, 2, 3]), "b": choice(["x", "y"])})
    sampler = make_sampler("grid", space, mode="min")
    sampler.restore([({"a": 1, "b": "x"}, 0.5, TrialState.COMPLETED),
                     ({"a": 1, "b": "y"}, None, TrialState.FAILED)])
    sampler.enqueue({"a": 3, "b": "y"})
    assert sampler.remaining() == 4
    first = sampler.ask()
    assert first.config == {"a": 3, "b": "y"}
    rest = [sampler.ask().config for _ in range(sampler.remaining())]
    assert sorted((c["a"], c["b"]) for c in rest) == [(2, "x"), (2, "y"), (3, "x")]


def test_grid_refuses_continuous_and_options() -> None:
    with pytest.raises(SpaceError, match="'lr' is a continuous loguniform"):
        make_sampler("grid", {"lr": loguniform(1e-3, 1.0)}, mode="min")
    with pytest.raises(SearchError, match="takes no options"):
        make_sampler("grid", {"a": grid([1])}, mode="min", shuffle=True)


def test_enqueue_comes_first_and_is_validated() -> None:
    sampler = make_sampler("tpe", SPACE, mode="min", seed=0)
    config = {"lr": 0.01, "dropout": 0.1, "units": 16, "depth": 2, "act": "relu", "epochs": 5,
              "opt": {"name": "SGD", "momentum": 0.9}}
    sampler.enqueue(config)
    assert sampler.ask().config == config
    with pytest.raises(SpaceError, match="'dropout'"):
        sampler.enqueue({**config, "dropout": 0.9})


def test_restore_tells_history_and_shifts_the_seed() -> None:
    first = make_sampler("random", SPACE, mode="min", seed=11)
    history = []
    for _ in range(3):
        s = first.ask()
        history.append((s.config, s.config["dropout"], TrialState.COMPLETED))
    resumed = make_sampler("random", SPACE, mode="min", seed=11)
    resumed.restore(history)
    trials = resumed.study.trials  # type: ignore[attr-defined]
    assert [t.value for t in trials] == [h[1] for h in history]
    assert resumed.ask().config not in [h[0] for h in history]  # not a replay of the first run


def test_tell_errors() -> None:
    sampler = make_sampler("random", SPACE, mode="min", seed=0)
    s = sampler.ask()
    with pytest.raises(SearchError, match="Only finished trials"):
        sampler.tell(s.number, 1.0, TrialState.RUNNING)
    sampler.tell(s.number, float("nan"), TrialState.COMPLETED)  # NaN -> a failed trial
    assert sampler.study.trials[0].state.name == "FAIL"  # type: ignore[attr-defined]
    with pytest.raises(SearchError, match="already told"):
        sampler.tell(s.number, 1.0, TrialState.COMPLETED)
    with pytest.raises(SearchError, match="never asked"):
        sampler.tell(99, 1.0, TrialState.COMPLETED)


def test_make_sampler_errors() -> None:
    with pytest.raises(SearchError, match="random, grid, tpe, cmaes, qmc, gp"):
        make_sampler("bayes", SPACE, mode="min")
    with pytest.raises(SearchError, match="mode must be"):
        make_sampler("tpe", SPACE, mode="minimize")
    with pytest.raises(SearchError, match="TPESampler"):
        make_sampler("tpe", SPACE, mode="min", n_startup=3)
