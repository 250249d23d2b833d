"""Choices, grids, the public domain constructors, and a space's nodes.

Checking and encoding a space's nodes lives here too, since a ``choice`` of dicts nests
further nodes.

A space is a dict mapping parameter names to a domain (``uniform``, ``loguniform``,
``integer``, ``choice``, ``grid``), a constant passed through unchanged, or a nested dict.
A ``choice`` whose options are dicts makes a conditional space: only the chosen branch's
parameters exist in a config. Configs are plain JSON-serialisable nested dicts; their flat
form joins nested names with ``"."`` (``{"opt": {"lr": 0.1}}`` <-> ``{"opt.lr": 0.1}``).

Domains are light records; a :class:`Space` checks them all at once, so every error names
the parameter path (``opt[0].momentum`` is parameter ``momentum`` of option 0 of ``opt``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SpaceError
from kale_ext.search._ranges import (
    Domain,
    Integer,
    LogUniform,
    Uniform,
    _canon,
    _json_problem,
    _same,
    _where,
)

if TYPE_CHECKING:
    import optuna

_FORMAT = 1
_BAD_KEY_CHARS = ".[]"  # used by flat names and branch paths


class Choice(Domain):
    """One of a list of options. Dict options are branches of a conditional space."""

    kind = "choice"

    def __init__(self, options: Any) -> None:
        self.options: Any = list(options) if isinstance(options, list | tuple) else options

    def _check(self, path: str) -> None:
        if not isinstance(self.options, list):
            raise SpaceError(
                f"{_where(path)}: {self.kind}() takes a list of options, but got "
                f"{self.options!r}."
            )
        if not self.options:
            raise SpaceError(f"{_where(path)}: {self.kind}([]) has no options; give at least one.")
        seen: dict[str, int] = {}
        for i, option in enumerate(self.options):
            sub = f"{path}[{i}]"
            if isinstance(option, Mapping):
                _check_node(option, sub)
                key = _canon(_encode_node(option))
            else:
                problem = _json_problem(option)
                if problem:
                    raise SpaceError(
                        f"{_where(sub)}: option {i} of {self.kind}() must be a JSON value "
                        f"(configs are stored as JSON): {problem}."
                    )
                number = isinstance(option, int | float) and not isinstance(option, bool)
                key = _canon(["value", float(option) if number else option])  # 1 == 1.0
            if key in seen:
                raise SpaceError(
                    f"{_where(path)}: options {seen[key]} and {i} of {self.kind}() are the same "
                    f"({option!r}); options must be distinct."
                )
            seen[key] = i

    @property
    def conditional(self) -> bool:
        return any(isinstance(o, Mapping) for o in self.options)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "options": [
            _encode_node(o) if isinstance(o, Mapping) else {"type": "const", "value": o}
            for o in self.options]}

    def __repr__(self) -> str:
        return f"{self.kind}({self.options!r})"

    # The internal value is always the option's index: Optuna's categorical choices must be
    # scalars, and indices keep 1, 1.0 and True apart.
    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(range(len(self.options))))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(list(range(len(self.options))))

    def check_value(self, value: Any, path: str) -> Any:
        for option in self.options:
            if not isinstance(option, Mapping) and _same(option, value):
                return copy.deepcopy(option)
        raise SpaceError(f"{_where(path)}: {value!r} is not among the options of {self!r}.")

    def grid_values(self, path: str) -> list[Any]:
        return [copy.deepcopy(o) for o in self.options]


class Grid(Choice):
    """Values the grid algorithm enumerates exhaustively; a ``choice`` for other algorithms."""

    kind = "grid"


def uniform(low: float, high: float) -> Uniform:
    """Floats uniform on ``[low, high]``, ``low < high``."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """Floats log-uniform on ``[low, high]``, ``0 < low < high`` (learning rates, decays)."""
    return LogUniform(low, high)


def integer(low: int, high: int, step: int = 1, log: bool = False) -> Integer:
    """Integers from ``low`` to ``high`` inclusive in steps of ``step``; exported as ``int``.

    ``step`` must divide ``high - low``. ``log=True`` (with ``step=1``, ``low >= 1``) samples
    on a log scale, for layer widths and batch sizes.
    """
    return Integer(low, high, step, log)


def choice(options: list[Any]) -> Choice:
    """One of ``options``: JSON values, or dicts holding further domains (conditional)."""
    return Choice(options)


def grid(values: list[Any]) -> Grid:
    """Values that ``algorithm="grid"`` enumerates; other algorithms treat it as ``choice``."""
    return Grid(values)


_DOMAINS: dict[str, Any] = {  # type -> constructor
    "uniform": Uniform, "loguniform": LogUniform, "int": Integer, "choice": Choice,
    "grid": Grid,
}


# -- checking and encoding a space's nodes ------------------------------------------------

def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_node(node: Any, path: str) -> None:
    if not isinstance(node, Mapping):
        raise SpaceError(f"{_where(path)}: a space must be a dict of parameters, got {node!r}.")
    if not node:
        raise SpaceError(
            f"{_where(path)}: an empty dict is neither a parameter nor a nested space; "
            "remove it or give it parameters."
        )
    for key, spec in node.items():
        if not isinstance(key, str) or not key or any(c in key for c in _BAD_KEY_CHARS):
            raise SpaceError(
                f"{_where(path)}: parameter name {key!r} must be a non-empty str without "
                f"any of {_BAD_KEY_CHARS!r} (they separate nested names)."
            )
        sub = _join(path, key)
        if isinstance(spec, Domain):
            spec._check(sub)
        elif isinstance(spec, Mapping):
            _check_node(spec, sub)
        else:
            problem = _json_problem(spec)
            if problem:
                raise SpaceError(
                    f"{_where(sub)}: a constant must be a JSON value (configs are stored as "
                    f"JSON): {problem}."
                )


def _encode_node(node: Mapping[str, Any]) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for key, spec in node.items():
        if isinstance(spec, Domain):
            items[key] = spec.to_dict()
        elif isinstance(spec, Mapping):
            items[key] = _encode_node(spec)
        else:
            items[key] = {"type": "const", "value": json.loads(_canon(spec))}
    return {"type": "dict", "items": items}


# The fields each stored description has: (required, optional).
_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "dict": (frozenset({"items"}), frozenset()),
    "const": (frozenset({"value"}), frozenset()),
    "choice": (frozenset({"options"}), frozenset()),
    "grid": (frozenset({"options"}), frozenset()),
    "uniform": (frozenset({"low", "high"}), frozenset()),
    "loguniform": (frozenset({"low", "high"}), frozenset()),
    "int": (frozenset({"low", "high"}), frozenset({"step", "log"})),
}


def _decode(data: Any, path: str) -> Any:
    if not isinstance(data, Mapping) or "type" not in data:
        raise SpaceError(f"{_where(path)}: cannot read space description {data!r}; it must "
                         "be a dict with a 'type'.")
    kind = data["type"]
    if isinstance(kind, str) and kind in _FIELDS:
        required, optional = _FIELDS[kind]
        fields = set(data) - {"type"}
        if not required <= fields or not fields <= required | optional:
            raise SpaceError(
                f"{_where(path)}: malformed {kind!r} description {data!r}: it must have the "
                f"fields {sorted(required)}" + (f" and may have {sorted(optional)}"
                                                if optional else "") + ", nothing else.")
        if kind == "dict":
            items = data["items"]
            if not isinstance(items, Mapping):
                raise SpaceError(f"{_where(path)}: malformed 'dict' description: its items "
                                 f"must be a dict of parameters, but got {items!r}.")
            return {k: _decode(v, _join(path, k)) for k, v in items.items()}
        if kind == "const":
            return data["value"]
        if kind in ("choice", "grid"):
            options = data["options"]
            if not isinstance(options, list):
                raise SpaceError(f"{_where(path)}: malformed {kind!r} description: its "
                                 f"options must be a list, but got {options!r}.")
            return _DOMAINS[kind]([_decode(o, f"{path}[{i}]") for i, o in enumerate(options)])
        return _DOMAINS[kind](**{k: v for k, v in data.items() if k != "type"})
    raise SpaceError(
        f"{_where(path)}: unknown domain type {kind!r}; known: {sorted(_FIELDS)}."
    )
