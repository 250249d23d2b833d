"""Search spaces: validation errors, configs, serialisation, flattening and grids."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale_ext._errors import SpaceError
from kale_ext.search import Space, choice, grid, loguniform, make_sampler, uniform
from kale_ext.search import int as int_

OPT = {"opt": choice([{"name": "SGD", "momentum": uniform(0, 0.9)},
                      {"name": "Adam", "betas": {"b1": uniform(0.8, 0.99)}}])}
SPACE = {"lr": loguniform(1e-4, 1e-1), "layers": int_(1, 9, step=2),
         "act": choice(["relu", "tanh"]),
         "epochs": 3, "model": {"width": grid([16, 32]), "sizes": [64, 64]}, **OPT}
CONFIG = {"lr": 0.01, "layers": 3, "act": "tanh", "epochs": 3,
          "model": {"width": 32, "sizes": [64, 64]}, "opt": {"name": "SGD", "momentum": 0.5}}


@pytest.mark.parametrize(("spec", "fragments"), [
    ({"lr": uniform(1, 1)}, ["'lr'", "low < high"]),
    ({"a": {"lr": uniform(2, 1)}}, ["'a.lr'", "low=2", "high=1"]),
    ({"lr": loguniform(0, 1)}, ["'lr'", "low > 0"]),
    ({"n": int_(0, 10, step=3)}, ["'n'", "step=3", "does not divide"]),
    ({"n": int_(0, 10, log=True)}, ["'n'", "log=True", "low >= 1"]),
    ({"n": int_(0.5, 10)}, ["'n'", "low must be an integer", "0.5"]),
    ({"lr": uniform("a", 1)}, ["'lr'", "low must be a finite number"]),
    ({"lr": uniform(0, math.inf)}, ["'lr'", "high"]),
    ({"c": choice([])}, ["'c'", "no options"]),
    ({"c": choice("abc")}, ["'c'", "list of options"]),
    ({"c": choice([1, 1.0])}, ["'c'", "options 0 and 1", "distinct"]),
    ({"c": choice([{1, 2}])}, ["'c[0]'", "set", "JSON"]),
    ({"c": choice([object()])}, ["'c[0]'", "object", "JSON"]),
    ({"o": choice([{"x": uniform(1, 0)}, "none"])}, ["'o[0].x'", "low < high"]),
    ({"k": {1: 2}}, ["'k'", "parameter name 1", "str"]),
    ({3: 1}, ["the space", "parameter name 3"]),
    ({"a.b": 1}, ["'a.b'", "'.[]'"]),
    ({"": 1}, ["''", "non-empty"]),
    ({"k": math.nan}, ["'k'", "nan", "finite"]),
    ({"k": [1, {2: 3}]}, ["'k'", "dict key 2"]),
    ({"k": uniform}, ["'k'", "forget to call"]),
    ({"k": [uniform(0, 1)]}, ["'k'", "domain inside a list"]),
    ({"k": {}}, ["'k'", "empty dict"]),
    ({}, ["the space", "empty dict"]),
])
def test_malformed_space_names_path_value_and_rule(spec: Any, fragments: list[str]) -> None:
    with pytest.raises(SpaceError) as info:
        Space(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_not_a_dict() -> None:
    with pytest.raises(SpaceError, match="must be a dict"):
        Space([("lr", uniform(0, 1))])  # type: ignore[arg-type]


# -- property tests -----------------------------------------------------------------------
names = st.text("abcxyz_", min_size=1, max_size=4)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5),
                         st.floats(-10, 10, allow_nan=False), st.text(max_size=3))


def _option_key(value: Any) -> str:
    """The space's rule for distinct options: numbers by value (0 == 0.0), bools apart."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return json.dumps(float(value) if number else value)


@st.composite
def domains(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["uniform", "loguniform", "int", "choice", "grid"]))
    if kind in ("uniform", "loguniform"):
        low = draw(st.floats(1e-3, 10))
        high = low + draw(st.floats(1e-3, 10))
        return uniform(low, high) if kind == "uniform" else loguniform(low, high)
    if kind == "int":
        low, step = draw(st.integers(-5, 5)), draw(st.integers(1, 3))
        return int_(low, low + step * draw(st.integers(1, 4)), step=step)
    options = draw(st.lists(json_scalars, min_size=1, max_size=4, unique_by=_option_key))
    return choice(options) if kind == "choice" else grid(options)


def spaces(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.one_of(domains(), json_scalars, st.lists(st.integers(0, 3), max_size=2))
    if depth == 0:
        return st.dictionaries(names, leaf, min_size=1, max_size=3)
    branch = st.builds(choice, st.lists(spaces(depth - 1), min_size=1, max_size=2,
                                        unique_by=lambda d: json.dumps(Space(d).to_dict())))
    return st.dictionaries(names, st.one_of(leaf, spaces(depth - 1), branch),
                           min_size=1, max_size=3)


@st.composite
def malformed(draw: st.DrawFn) -> dict[str, Any]:
    bad = draw(st.sampled_from([
        uniform(1, 1), uniform(3, 2), loguniform(-1, 1), loguniform(0, 1), uniform(math.nan, 1),
        int_(0, 5, step=2), int_(1, 2, step=0), int_(0, 9, log=True), int_(True, 4),
        choice([]), choice(5), choice([[1], (1,)]), choice([set()]), choice([b"x"]),
        choice([{"x": uniform(1, 0)}]), choice([{}]), {}, {1: 1}, {"a.b": 1}, {"a[0]": 1},
        math.inf, object(), {"x": [math.nan]}, print, complex(1, 2),
    ]))
    space = draw(spaces(1))
    # Hide the bad entry at some depth.
    node = space
    for key in draw(st.lists(names, max_size=2)):
        node = node.setdefault(key + "_n", {}) if isinstance(node.get(key + "_n", {}), dict) \
            else node
    node[draw(names) + "_bad"] = bad
    return space


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_malformed_spaces_raise_space_error_only(spec: dict[str, Any]) -> None:
    with pytest.raises(SpaceError):
        Space(spec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces(), st.integers(0, 2**16))
def test_sampled_configs_validate_and_are_json(spec: dict[str, Any], seed: int) -> None:
    space = Space(spec)
    sampler = make_sampler("random", space, mode="min", seed=seed)
    for _ in range(3):
        suggestion = sampler.ask()
        assert space.validate_config(suggestion.config) == suggestion.config
        assert json.loads(json.dumps(suggestion.config, allow_nan=False)) == suggestion.config
        assert Space.unflatten(suggestion.flat_params) == suggestion.config
        assert Space.flatten(suggestion.config) == suggestion.flat_params


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces())
def test_to_dict_from_dict_round_trips_through_json(spec: dict[str, Any]) -> None:
    space = Space(spec)
    data = json.loads(json.dumps(space.to_dict(), allow_nan=False))
    again = Space.from_dict(data)
    assert again == space
    assert again.to_dict() == space.to_dict()


# -- configs ------------------------------------------------------------------------------
def test_validate_config_accepts_and_normalises() -> None:
    space = Space(SPACE)
    assert space.validate_config(CONFIG) == CONFIG
    assert space.validate_config({**CONFIG, "layers": 3.0})["layers"] == 3
    assert isinstance(space.validate_config({**CONFIG, "lr": 1e-3})["lr"], float)
    # Constants outside branches may be changed (restart with more epochs).
    assert space.validate_config({**CONFIG, "epochs": 10})["epochs"] == 10


@pytest.mark.parametrize(("change", "fragments"), [
    ({"lr": 0.5}, ["'lr'", "0.5", "outside"]),
    ({"layers": 4}, ["'layers'", "4"]),
    ({"layers": True}, ["'layers'", "True"]),
    ({"act": "gelu"}, ["'act'", "'gelu'", "not among"]),
    ({"opt": {"name": "Adam", "momentum": 0.5}}, ["'opt'", "matches no option"]),
    ({"opt": {"name": "SGD", "momentum": 2.0}}, ["'opt'", "outside"]),
    ({"model": {"width": 8, "sizes": [64, 64]}}, ["'model.width'", "8"]),
    ({"extra": 1}, ["unknown ['extra']"]),
    ({"epochs": {1, 2}}, ["'epochs'", "set"]),
])
def test_validate_config_rejects(change: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(SpaceError) as info:
        Space(SPACE).validate_config({**CONFIG, **change})
    for fragment in fragments:
        assert fragment in str(info.value)


def test_validate_config_missing_key() -> None:
    config = dict(CONFIG)
    del config["lr"]
    with pytest.raises(SpaceError, match=r"missing \['lr'\]"):
        Space(SPACE).validate_config(config)


def test_apply_flat_and_nested_changes_and_branch_switch() -> None:
    space = Space(SPACE)
    new = space.apply(CONFIG, {"model.width": 16, "opt": {"name": "Adam", "betas": {"b1": 0.9}},
                               "epochs": 20})
    assert new["model"] == {"width": 16, "sizes": [64, 64]}
    assert new["opt"] == {"name": "Adam", "betas": {"b1": 0.9}}
    assert new["epochs"] == 20
    assert CONFIG["opt"] == {"name": "SGD", "momentum": 0.5}  # the input is not modified
    with pytest.raises(SpaceError, match="'lr'"):
        space.apply(CONFIG, {"lr": 2.0})


def test_optuna_params_of_conditional_config() -> None:
    params, distributions = Space(SPACE).optuna_params(CONFIG)
    assert params["opt"] == 0 and params["opt[0].momentum"] == 0.5
    assert "opt[1].betas.b1" not in params
    assert params["act"] == 1 and params["model.width"] == 1
    assert set(params) == set(distributions)


def test_flatten_unflatten() -> None:
    flat = Space.flatten(CONFIG)
    assert flat["opt.momentum"] == 0.5 and flat["model.sizes"] == [64, 64]
    assert Space.unflatten(flat) == CONFIG
    with pytest.raises(SpaceError, match="clash"):
        Space.unflatten({"a": 1, "a.b": 2})


# -- grids --------------------------------------------------------------------------------
def test_grid_enumerates_the_product_with_branches() -> None:
    space = Space({"a": grid([1, 2, 3]), "n": int_(0, 4, step=2),
                   "b": choice([{"kind": "x", "k": grid([1, 2])}, "none"]), "c": "const"})
    configs = list(space.grid())
    assert space.grid_size() == len(configs) == 3 * 3 * 3
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == len(configs)
    for config in configs:
        assert space.validate_config(config) == config
    assert {"a": 1, "n": 2, "b": {"kind": "x", "k": 2}, "c": "const"} in configs


def test_grid_refuses_continuous_dimensions() -> None:
    with pytest.raises(SpaceError, match=r"'opt\[0\].momentum' is a continuous uniform"):
        Space(OPT).grid_size()
    with pytest.raises(SpaceError, match="too many for a grid"):
        Space({"n": int_(0, 10**7)}).grid_size()


def test_grid_is_a_choice_for_other_algorithms() -> None:
    space = Space({"w": grid([16, 32, 64])})
    sampler = make_sampler("tpe", space, mode="max", seed=0)
    assert {sampler.ask().config["w"] for _ in range(20)} <= {16, 32, 64}


@pytest.mark.parametrize(("stored", "fragments"), [
    ({"a": {"type": "uniform", "high": 2}}, ["'a'", "must have the fields ['high', 'low']"]),
    ({"a": {"type": "choice"}}, ["'a'", "must have the fields ['options']"]),
    ({"a": {"type": "const"}}, ["'a'", "['value']"]),
    ({"a": {"type": "int", "low": 1, "high": 3, "base": 2}}, ["'a'", "may have ['log', 'step']"]),
    ({"a": {"type": "dict", "items": [[]]}}, ["'a'", "items must be a dict", "[[]]"]),
    ({"a": {"type": "grid", "options": "abc"}}, ["'a'", "options must be a list", "'abc'"]),
    ({"a": {"type": 3}}, ["'a'", "unknown domain type 3", "'uniform'"]),
])
def test_a_malformed_stored_space_names_path_field_and_rule(stored: Any,
                                                            fragments: list[str]) -> None:
    data = {"format": 1, "space": {"type": "dict", "items": stored}}
    with pytest.raises(SpaceError) as info:
        Space.from_dict(data)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
