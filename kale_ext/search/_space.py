"""Search spaces: parameter domains, nested and conditional spaces, validation and grids.

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
import itertools
import json
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SpaceError

if TYPE_CHECKING:
    import optuna

_FORMAT = 1
_MAX_GRID_DIM = 100_000  # values of one grid dimension; beyond this a grid is a mistake
_BAD_KEY_CHARS = ".[]"  # used by flat names and branch paths


def _where(path: str) -> str:
    return f"parameter {path!r}" if path else "the space"


def _json_problem(value: Any) -> str | None:
    """Why ``value`` is not a JSON value (finite numbers, str keys), or None if it is."""
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a finite number"
    if isinstance(value, list | tuple):
        for item in value:
            problem = _json_problem(item)
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"dict key {key!r} is not a str"
            problem = _json_problem(item)
            if problem:
                return problem
        return None
    if isinstance(value, Domain):
        return f"{value!r} is a domain inside a list; put domains in a dict"
    hint = " (did you forget to call it?)" if callable(value) else ""
    if isinstance(value, numbers.Number):
        hint = "; convert it with int() or float()"
    return f"{value!r} of type {type(value).__name__} is not JSON-serialisable{hint}"


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def _same(a: Any, b: Any) -> bool:
    """Equality for JSON values: numbers compare by value, bools only with bools."""
    num = numbers.Real
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return bool(a == b)
    try:
        return _canon(a) == _canon(b)
    except (TypeError, ValueError):
        return False


def _number(value: Any, what: str, path: str, *, integral: bool = False) -> float:
    kind = "an integer" if integral else "a finite number"
    # Builtin numbers only: numpy integers would not survive json.dumps in to_dict().
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and not math.isfinite(value):
        ok = False
    if ok and integral and not float(value).is_integer():
        ok = False
    if not ok:
        raise SpaceError(f"{_where(path)}: {what} must be {kind}, but got {what}={value!r}.")
    return float(value)


class Domain(ABC):
    """One sampled dimension of a space. Built by the public constructors, checked by Space."""

    kind: str = ""

    @abstractmethod
    def _check(self, path: str) -> None:
        """Raise SpaceError (naming ``path``) when the arguments break a rule."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON description, read back by ``Space.from_dict``."""

    @abstractmethod
    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask an Optuna trial for this dimension's internal value under ``name``."""

    @abstractmethod
    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The Optuna distribution of the internal value (for ``create_trial``)."""

    @abstractmethod
    def check_value(self, value: Any, path: str) -> Any:
        """Normalised ``value`` if it lies in the domain, else SpaceError."""

    def grid_values(self, path: str) -> list[Any]:
        raise SpaceError(
            f"{_where(path)} is a continuous {self!r}; the grid algorithm needs a finite set "
            "of values: use grid([...]), choice([...]) or int(...), or another algorithm."
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{self.kind}({args})"

    def __eq__(self, other: object) -> bool:
        # Plain dict equality: works on domains not yet checked (NaN bounds, sets...).
        try:
            return isinstance(other, Domain) and type(self) is type(other) \
                and self.to_dict() == other.to_dict()
        except TypeError:  # e.g. choice(5): options not a list
            return self is other

    def __hash__(self) -> int:
        return hash(repr(self))


class Uniform(Domain):
    """Floats drawn uniformly from ``[low, high]``."""

    kind = "uniform"
    log = False

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def _check(self, path: str) -> None:
        low = _number(self.low, "low", path)
        high = _number(self.high, "high", path)
        if low >= high:
            raise SpaceError(f"{_where(path)}: {self!r} needs low < high; swap or widen them.")
        if self.log and low <= 0:
            raise SpaceError(
                f"{_where(path)}: {self!r} needs low > 0 (a log scale has no zero); "
                "use a small positive low such as 1e-8, or uniform()."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "low": self.low, "high": self.high}

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def check_value(self, value: Any, path: str) -> Any:
        value = _number(value, "value", path)
        if not self.low <= value <= self.high:
            raise SpaceError(f"{_where(path)}: {value!r} is outside {self!r}.")
        return float(value)


class LogUniform(Uniform):
    """Floats whose logarithm is uniform on ``[log(low), log(high)]``; needs ``low > 0``."""

    kind = "loguniform"
    log = True


class Integer(Domain):
    """Integers ``low, low+step, ..., high`` (both ends included), optionally log-scaled."""

    kind = "int"

    def __init__(self, low: int, high: int, step: int = 1, log: bool = False) -> None:
        self.low, self.high, self.step, self.log = low, high, step, log

    def _check(self, path: str) -> None:
        low = _number(self.low, "low", path, integral=True)
        high = _number(self.high, "high", path, integral=True)
        step = _number(self.step, "step", path, integral=True)
        self.low, self.high, self.step = low, high, step = int(low), int(high), int(step)
        if not isinstance(self.log, bool):
            raise SpaceError(f"{_where(path)}: log must be True or False, got {self.log!r}.")
        if low >= high:
            raise SpaceError(f"{_where(path)}: {self!r} needs low < high; swap or widen them.")
        if step < 1:
            raise SpaceError(f"{_where(path)}: {self!r} needs step >= 1.")
        if (high - low) % step:
            raise SpaceError(
                f"{_where(path)}: step={step} does not divide high - low = {high - low} in "
                f"{self!r}; pick a high of low + a multiple of step."
            )
        if self.log and (low < 1 or step != 1):
            raise SpaceError(
                f"{_where(path)}: {self!r} with log=True needs low >= 1 and step=1."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "low": self.low, "high": self.high, "step": self.step,
                "log": self.log}

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step),
                                 log=self.log)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step))

    def check_value(self, value: Any, path: str) -> Any:
        value = int(_number(value, "value", path, integral=True))
        if not self.low <= value <= self.high or (value - self.low) % self.step:
            raise SpaceError(f"{_where(path)}: {value!r} is not one of the values of {self!r}.")
        return value

    def grid_values(self, path: str) -> list[Any]:
        count = (int(self.high) - int(self.low)) // int(self.step) + 1
        if count > _MAX_GRID_DIM:
            raise SpaceError(
                f"{_where(path)}: {self!r} has {count} values, too many for a grid "
                f"(limit {_MAX_GRID_DIM}); use a larger step or a sampling algorithm."
            )
        return list(range(int(self.low), int(self.high) + 1, int(self.step)))


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


# -- walking a space ----------------------------------------------------------------------

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


def _decode(data: Any, path: str) -> Any:
    if not isinstance(data, Mapping) or "type" not in data:
        raise SpaceError(f"{_where(path)}: cannot read space description {data!r}.")
    kind = data["type"]
    try:
        if kind == "dict":
            return {k: _decode(v, _join(path, k)) for k, v in dict(data["items"]).items()}
        if kind == "const":
            return data["value"]
        if kind in ("choice", "grid"):
            return _DOMAINS[kind]([_decode(o, f"{path}[{i}]")
                                   for i, o in enumerate(data["options"])])
        if kind in _DOMAINS:
            args = {k: v for k, v in data.items() if k != "type"}
            return _DOMAINS[kind](**args)
    except (KeyError, TypeError, AttributeError) as e:
        raise SpaceError(f"{_where(path)}: malformed {kind!r} description {data!r}: {e}") from e
    raise SpaceError(
        f"{_where(path)}: unknown domain type {kind!r}; known: {sorted(_DOMAINS)}."
    )


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
