"""The scheduler interface: early-stopping policy, decided per report, without I/O."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from kale_ext._errors import SearchError
from kale_ext.trial import CONTINUE, Action, Decision, TrialState

_TYPES: dict[str, type[Scheduler]] = {}


class Scheduler(ABC):
    """Decides, on each report of a running trial, whether it continues.

    The search calls :meth:`setup` once, then :meth:`on_trial_add` when a trial starts
    (again when it is restarted: that forgets what was decided about its previous run),
    :meth:`on_report` for every report of the search's metric, and :meth:`on_trial_end`
    when it finishes. Values are compared as scores where higher is better, NaN being the
    worst, so ``mode="min"`` with values ``v`` decides exactly as ``mode="max"`` with ``-v``.
    A trial that was pruned or stopped gets the same decision again if it reports again.

    To rebuild the state after a restart of the driver, replay the stored reports through
    the same calls; every scheduler is deterministic given its seed and the call sequence.
    """

    type_name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            _TYPES[cls.type_name] = cls

    def __init__(self) -> None:
        self.metric: str | None = None
        self.mode: str | None = None
        self._final: dict[int, Decision] = {}

    def setup(self, metric: str, mode: str) -> None:
        """Set the metric name (used in reasons) and ``mode``, ``"min"`` or ``"max"``."""
        if mode not in ("min", "max"):
            raise SearchError(f"mode must be 'min' or 'max', but got mode={mode!r}.")
        self.metric, self.mode = metric, mode

    def on_trial_add(self, trial: int, params: Mapping[str, Any]) -> None:
        """Start (or restart) ``trial`` with the nested config ``params``."""
        self._final.pop(trial, None)
        self._forget(trial)

    def on_report(self, trial: int, step: int, value: float) -> Decision:
        """Decide on ``trial`` reporting ``value`` at ``step`` (its epoch/iteration)."""
        if self.mode is None:
            raise SearchError(
                f"{type(self).__name__} was not set up: call setup(metric, mode) first "
                "(a Search does this)."
            )
        if trial in self._final:
            return self._final[trial]
        decision = self._decide(trial, step, value, self.score(value))
        if decision.action in (Action.PRUNE, Action.STOP):
            self._final[trial] = decision
        return decision

    def on_trial_end(self, trial: int, state: TrialState) -> None:  # noqa: B027 - optional hook
        """Note that ``trial`` finished in ``state``."""

    @abstractmethod
    def _decide(self, trial: int, step: int, value: float, score: float) -> Decision:
        """Decide on one report; ``score`` is higher-is-better, NaN -> -inf."""

    def _forget(self, trial: int) -> None:  # noqa: B027 - optional hook
        """Drop what is known about ``trial``'s previous run (it restarts)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """``{"type": <name>, **constructor arguments}``, for :func:`from_dict`."""

    @classmethod
    def from_params(cls, args: dict[str, Any]) -> Scheduler:
        """Build from the arguments :meth:`to_dict` wrote."""
        return cls(**args)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({args})"

    # -- helpers ------------------------------------------------------------------------
    def score(self, value: float) -> float:
        """Higher-is-better form of a reported value; NaN (or a non-number) is the worst."""
        if self.is_nan(value):
            return -math.inf
        value = float(value)
        return value if self.mode == "max" else -value

    @staticmethod
    def is_nan(value: Any) -> bool:
        """Return True for NaN and for anything that is not a number."""
        try:
            return math.isnan(float(value))
        except (TypeError, ValueError):
            return True

    def value_of(self, score: float) -> float:
        """Inverse of :meth:`score`, for reasons (the worst score reads as NaN)."""
        if score == -math.inf:
            return math.nan
        return score if self.mode == "max" else -score

    @property
    def _name(self) -> str:
        return self.metric or "value"


def from_dict(data: Mapping[str, Any]) -> Scheduler:
    """Rebuild a scheduler from :meth:`Scheduler.to_dict`'s output (not yet set up)."""
    kind = data.get("type") if isinstance(data, Mapping) else None
    if kind not in _TYPES:
        raise SearchError(
            f"Cannot rebuild a scheduler from {data!r}: 'type' must be one of {sorted(_TYPES)}."
        )
    args = {k: v for k, v in data.items() if k != "type"}
    try:
        return _TYPES[kind].from_params(args)
    except TypeError as e:
        raise SearchError(f"Bad {kind} scheduler description {data!r}: {e}") from e


def check_number(name: str, value: Any, *, low: float, integral: bool = False,
                 inclusive: bool = False) -> None:
    """Raise SearchError unless ``value`` is a number above ``low`` (or equal, inclusive)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integral:
        ok = float(value).is_integer()
    if ok:
        ok = value >= low if inclusive else value > low
    if not ok:
        kind = "an integer" if integral else "a number"
        rel = ">=" if inclusive else ">"
        raise SearchError(f"{name} must be {kind} {rel} {low}, but got {name}={value!r}.")

__all__ = ["CONTINUE", "Scheduler", "check_number", "from_dict"]
