"""Search spaces: nested and conditional spaces of domains, configs, Optuna and grids.

A space is a dict mapping parameter names to a domain (``uniform``, ``loguniform``,
``integer``, ``choice``, ``grid``; see :mod:`kale_ext.search._domains`), a constant passed
through unchanged, or a nested dict. A ``choice`` whose options are dicts makes a
conditional space: only the chosen branch's parameters exist in a config. Configs are
plain JSON-serialisable nested dicts; their flat form joins nested names with ``"."``
(``{"opt": {"lr": 0.1}}`` <-> ``{"opt.lr": 0.1}``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SpaceError
from kale_ext.search._domains import _FORMAT, Choice, _check_node, _decode, _encode_node, _join
from kale_ext.search._ranges import Domain, _canon, _json_problem, _same, _where

if TYPE_CHECKING:
    import optuna


Picked = dict[str, tuple[Domain, Any]]  # Optuna name -> (domain, internal value)


def _config_of(node: Mapping[str, Any], value: Any, path: str, prefix: str,
               picked: Picked, in_branch: bool = False) -> dict[str, Any]:
    """Check a nested config against a node; fill ``picked`` with the Optuna params.

    Constants may change (restart with another epoch count), except inside a conditional
    branch, where they tell the branches apart (``{"name": "SGD", ...}``).
    """
    if not isinstance(value, Mapping):
        raise SpaceError(f"{_where(path)}: expected a dict of parameters, got {value!r}.")
    missing = [k for k in node if k not in value]
    extra = [k for k in value if k not in node]
    if missing or extra:
        what = [f"{label} {keys}" for label, keys in (("missing", missing), ("unknown", extra))
                if keys]
        raise SpaceError(
            f"{_where(path)}: config keys do not match the space: {', '.join(what)}; "
            f"the space has {list(node)}."
        )
    out: dict[str, Any] = {}
    for key, spec in node.items():
        sub, name, item = _join(path, key), prefix + key, value[key]
        if isinstance(spec, Choice) and spec.conditional:
            out[key] = _branch_of(spec, item, sub, name, picked)
        elif isinstance(spec, Domain):
            out[key] = spec.check_value(item, sub)
            internal = out[key]
            if isinstance(spec, Choice):
                internal = next(i for i, o in enumerate(spec.options) if _same(o, item))
            picked[name] = (spec, internal)
        elif isinstance(spec, Mapping):
            out[key] = _config_of(spec, item, sub, name + ".", picked, in_branch)
        elif in_branch and not _same(spec, item):
            raise SpaceError(f"{_where(sub)}: {item!r} is not this branch's constant {spec!r}.")
        else:
            problem = _json_problem(item)
            if problem:
                raise SpaceError(f"{_where(sub)}: {problem}.")
            out[key] = copy.deepcopy(item)  # constants may be edited (restart with new values)
    return out


def _branch_of(spec: Choice, item: Any, path: str, name: str, picked: Picked) -> Any:
    errors = []
    for i, option in enumerate(spec.options):
        if isinstance(option, Mapping):
            trial_picked: Picked = {}
            try:
                result = _config_of(option, item, path, f"{name}[{i}].", trial_picked, True)
            except SpaceError as e:
                errors.append(f"option {i}: {e}")
                continue
            picked[name] = (spec, i)
            picked.update(trial_picked)
            return result
        if _same(option, item):
            picked[name] = (spec, i)
            return copy.deepcopy(option)
    raise SpaceError(
        f"{_where(path)}: {item!r} matches no option of {spec!r}. " + " ".join(errors)
    )


def _suggest_node(node: Mapping[str, Any], trial: optuna.Trial, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, spec in node.items():
        name = prefix + key
        if isinstance(spec, Choice):
            index = spec.suggest(trial, name)
            option = spec.options[index]
            out[key] = _suggest_node(option, trial, f"{name}[{index}].") \
                if isinstance(option, Mapping) else copy.deepcopy(option)
        elif isinstance(spec, Domain):
            out[key] = spec.suggest(trial, name)
        elif isinstance(spec, Mapping):
            out[key] = _suggest_node(spec, trial, name + ".")
        else:
            out[key] = copy.deepcopy(spec)
    return out


def _grid_node(node: Mapping[str, Any], path: str) -> list[list[Any]]:
    """Per key, the list of values a grid enumerates (branches expanded)."""
    axes = []
    for key, spec in node.items():
        sub = _join(path, key)
        if isinstance(spec, Choice):
            values: list[Any] = []
            for i, option in enumerate(spec.options):
                if isinstance(option, Mapping):
                    values.extend(_grid_product(option, f"{sub}[{i}]"))
                else:
                    values.append(copy.deepcopy(option))
            axes.append(values)
        elif isinstance(spec, Domain):
            axes.append(spec.grid_values(sub))
        elif isinstance(spec, Mapping):
            axes.append(list(_grid_product(spec, sub)))
        else:
            axes.append([spec])
    return axes


def _grid_product(node: Mapping[str, Any], path: str) -> Iterator[dict[str, Any]]:
    keys = list(node)
    for combo in itertools.product(*_grid_node(node, path)):
        yield dict(zip(keys, copy.deepcopy(combo), strict=True))


class Space:
    """A validated search space.

    Parameters
    ----------
    spec
        Dict of parameter name to a domain (``uniform`` ...), a JSON constant, or a nested
        dict. A ``choice`` of dicts makes a conditional space.

    Raises
    ------
    SpaceError
        Naming the parameter path, the value and the broken rule.
    """

    def __init__(self, spec: Mapping[str, Any] | Space) -> None:
        if isinstance(spec, Space):
            spec = spec.spec
        _check_node(spec, "")
        self.spec: dict[str, Any] = dict(spec)

    def __repr__(self) -> str:
        return f"Space({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and _canon(self.to_dict()) == _canon(other.to_dict())

    __hash__ = None  # type: ignore[assignment]

    # -- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description, read back by :meth:`from_dict`."""
        return {"format": _FORMAT, "space": _encode_node(self.spec)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Space:
        """Rebuild a space from :meth:`to_dict`'s output (for resuming a search)."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise SpaceError(
                f"Cannot read space description {data!r}: expected format {_FORMAT} "
                "as written by Space.to_dict()."
            )
        return cls(_decode(data.get("space"), ""))

    # -- configs ----------------------------------------------------------------------
    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a nested config against the space and return it normalised.

        Numbers are range-checked (ints must be on the step), choices must be among the
        options, a conditional choice must match one branch; constants may hold any JSON
        value (so they can be changed on restart).
        """
        return _config_of(self.spec, config, "", "", {})

    def apply(self, config: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with ``changes`` (flat ``"a.b"`` names or nested dicts) applied, validated.

        A dict value replaces the whole subtree, so a conditional choice can switch branch.
        """
        new = copy.deepcopy(dict(config))
        for name, value in changes.items():
            parts = str(name).split(".")
            node = new
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[parts[-1]] = copy.deepcopy(value)
        return self.validate_config(new)

    def optuna_params(
        self, config: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, optuna.distributions.BaseDistribution]]:
        """Optuna's params and distributions for a config (to enqueue or add a trial)."""
        picked: Picked = {}
        _config_of(self.spec, config, "", "", picked)
        return ({name: v for name, (_, v) in picked.items()},
                {name: d.distribution() for name, (d, _) in picked.items()})

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample a nested config define-by-run from an Optuna trial."""
        return _suggest_node(self.spec, trial, "")

    @staticmethod
    def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": 0.1}`` (empty dicts stay leaves)."""
        flat: dict[str, Any] = {}
        for key, value in config.items():
            name = prefix + str(key)
            if isinstance(value, Mapping) and value:
                flat.update(Space.flatten(value, name + "."))
            else:
                flat[name] = value
        return flat

    @staticmethod
    def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`flatten`."""
        out: dict[str, Any] = {}
        for name, value in flat.items():
            parts = str(name).split(".")
            node = out
            for i, part in enumerate(parts[:-1]):
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise SpaceError(
                        f"Flat names clash: {'.'.join(parts[:i + 1])!r} is a value and also "
                        f"has nested parameter {name!r}."
                    )
                node = child
            if parts[-1] in node:
                raise SpaceError(f"Flat names clash at {name!r}.")
            node[parts[-1]] = value
        return out

    # -- grids ------------------------------------------------------------------------
    def grid(self) -> Iterator[dict[str, Any]]:
        """Every config of a space without continuous dimensions, in a fixed order."""
        return _grid_product(self.spec, "")

    def grid_size(self) -> int:
        """How many configs :meth:`grid` yields (SpaceError if a dimension is continuous)."""
        return _grid_count(self.spec, "")


def _grid_count(node: Mapping[str, Any], path: str) -> int:
    total = 1
    for key, spec in node.items():
        sub = _join(path, key)
        if isinstance(spec, Choice):
            total *= sum(_grid_count(o, f"{sub}[{i}]") if isinstance(o, Mapping) else 1
                         for i, o in enumerate(spec.options))
        elif isinstance(spec, Domain):
            total *= len(spec.grid_values(sub))
        elif isinstance(spec, Mapping):
            total *= _grid_count(spec, sub)
    return total
