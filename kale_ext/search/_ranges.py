"""The parameter domain base class and the range domains.

The range domains are ``uniform``, ``loguniform`` and ``int``; the JSON-value rules
every domain and constant follows live here too.

Domains are light records; a :class:`~kale_ext.search.Space` checks them all at once,
so every error names the parameter path (``opt[0].momentum`` is parameter ``momentum``
of option 0 of ``opt``).
"""

from __future__ import annotations

import json
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SpaceError

if TYPE_CHECKING:
    import optuna

_MAX_GRID_DIM = 100_000  # values of one grid dimension; beyond this a grid is a mistake


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
        """Return the Optuna distribution of the internal value (for ``create_trial``)."""

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
