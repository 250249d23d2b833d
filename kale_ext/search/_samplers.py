"""Samplers: which config to try next, through Optuna's ask/tell interface.

Every algorithm runs an in-memory Optuna study; a config is sampled define-by-run from the
:class:`~kale_ext.search.Space` (a conditional choice suggests its branch index, then that
branch's parameters under ``"<name>[<index>].<param>"``). Several trials may be asked before
any is told, as an asynchronous search needs.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import inspect
import math
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SearchError
from kale_ext.search._ranges import _canon
from kale_ext.search._space import Space
from kale_ext.trial import TrialState

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Suggestion:
    """A config to run.

    It has the sampler's trial ``number``, the nested ``config`` handed to the trial, and
    ``flat_params`` (``Space.flatten(config)``) for tables and the store.
    """

    number: int
    config: dict[str, Any]
    flat_params: dict[str, Any]


History = Iterable[tuple[Mapping[str, Any], "float | None", TrialState]]


class Sampler(ABC):
    """Decides the configs of a search. One instance per search; not thread-safe."""

    algorithm: str = ""

    @abstractmethod
    def ask(self) -> Suggestion:
        """Return the next config (enqueued configs first)."""

    @abstractmethod
    def tell(self, number: int, value: float | None, state: TrialState, *,
             step: int | None = None) -> None:
        """Report how asked trial ``number`` ended.

        ``COMPLETED`` with its final value; ``PRUNED``/``STOPPED`` with its last value (and
        ``step``, the step of that value), which Optuna records as a pruned trial; ``FAILED``,
        or a missing or NaN value, as a failed one.
        """

    @abstractmethod
    def remaining(self) -> int | None:
        """How many configs are left (grid), or None when the algorithm is unbounded."""

    @abstractmethod
    def enqueue(self, config: Mapping[str, Any]) -> None:
        """Have ``ask`` return ``config`` (validated against the space) before sampling."""

    @abstractmethod
    def add(self, config: Mapping[str, Any], value: float | None, state: TrialState, *,
            step: int | None = None) -> None:
        """Record a finished trial the sampler did not ask for (resumed or restarted)."""

    def restore(self, history: History) -> None:
        """Tell the sampler every finished trial of a resumed search.

        ``history`` holds ``(config, value, state)`` tuples, in the order they finished.
        """
        for config, value, state in history:
            self.add(config, value, state)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's per-trial INFO log lines and experimental warnings for one call."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _optuna_state(value: float | None, state: TrialState) -> tuple[Any, float | None]:
    from optuna.trial import TrialState as OptunaState

    if not isinstance(state, TrialState) or not state.is_finished():
        raise SearchError(
            f"Only finished trials can be told to a sampler, but got state={state!r}; "
            "enqueue() a config that should run again."
        )
    # A NaN or infinite value is no result: told as one, +inf would be the best of a
    # maximised search forever, while search.best (from the store) ignores it.
    if value is None or not math.isfinite(value) or state is TrialState.FAILED:
        return OptunaState.FAIL, None
    if state is TrialState.COMPLETED:
        return OptunaState.COMPLETE, float(value)
    return OptunaState.PRUNED, float(value)


class OptunaSampler(Sampler):
    """An algorithm backed by one of Optuna's samplers.

    Parameters
    ----------
    algorithm
        Name shown in reprs and errors.
    space
        The search space.
    factory
        Builds the Optuna sampler from a seed (called again on ``restore`` with a shifted
        seed, so a resumed seeded search does not repeat its first configs).
    mode
        ``"min"`` or ``"max"``.
    seed
        Seed for repeatable searches.
    """

    def __init__(self, algorithm: str, space: Space,
                 factory: Callable[[int | None], optuna.samplers.BaseSampler], *,
                 mode: str, seed: int | None = None) -> None:
        import optuna

        self.algorithm, self.space, self.mode, self.seed = algorithm, space, mode, seed
        self._factory = factory
        with _quiet():
            self.study = optuna.create_study(
                direction="minimize" if mode == "min" else "maximize", sampler=factory(seed))
        self._asked: dict[int, optuna.Trial] = {}
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._told: set[int] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.algorithm!r} mode={self.mode!r} seed={self.seed}>"

    def ask(self) -> Suggestion:
        queued = self._queue.popleft() if self._queue else None
        with _quiet():
            if queued is not None:
                params, _ = self.space.optuna_params(queued)
                self.study.enqueue_trial(params)
            trial = self.study.ask()
            config = self.space.suggest(trial)
        if queued is not None:
            config = queued  # the same params, and its constants may differ from the space's
        self._asked[trial.number] = trial
        return Suggestion(trial.number, config, Space.flatten(config))

    def tell(self, number: int, value: float | None, state: TrialState, *,
             step: int | None = None) -> None:
        optuna_state, last = _optuna_state(value, state)
        trial = self._asked.pop(number, None)
        if trial is None:
            done = "was already told" if number in self._told else "was never asked"
            raise SearchError(
                f"Trial {number} {done}; a trial ends once. Use add(config, value, state) for "
                "a trial re-run with other params."
            )
        with _quiet():
            if optuna_state.name == "PRUNED":
                trial.report(last, step if step is not None else 0)  # type: ignore[arg-type]
                self.study.tell(trial, state=optuna_state)
            else:
                self.study.tell(trial, last, state=optuna_state)
        self._told.add(number)

    def remaining(self) -> int | None:
        return None

    def enqueue(self, config: Mapping[str, Any]) -> None:
        self._queue.append(self.space.validate_config(config))

    def add(self, config: Mapping[str, Any], value: float | None, state: TrialState, *,
            step: int | None = None) -> None:
        from optuna.trial import create_trial

        params, distributions = self.space.optuna_params(config)
        optuna_state, last = _optuna_state(value, state)
        pruned = optuna_state.name == "PRUNED"
        with _quiet():
            self.study.add_trial(create_trial(
                state=optuna_state, value=last if pruned or optuna_state.name == "COMPLETE"
                else None, params=params, distributions=distributions,
                intermediate_values={step or 0: last} if pruned and last is not None else None))

    def restore(self, history: History) -> None:
        count = len(self.study.trials)
        super().restore(history)
        if self.seed is not None:
            # The same seed would replay the first run's configs; shift it by the history.
            with _quiet():
                self.study.sampler = self._factory(self.seed + len(self.study.trials) - count)


class GridSampler(OptunaSampler):
    """Every combination of a space's grid/choice/int values, each once, in a fixed order.

    Enqueued configs run first; those (and restored ones) are not asked again by the grid.
    """

    def __init__(self, space: Space, *, mode: str, seed: int | None = None) -> None:
        import optuna

        self.total = space.grid_size()  # raises SpaceError on continuous dimensions
        super().__init__("grid", space, lambda s: optuna.samplers.RandomSampler(seed=s),
                         mode=mode, seed=seed)
        self._grid = space.grid()
        self._seen: set[str] = set()

    def ask(self) -> Suggestion:
        if not self._queue:
            for config in self._grid:
                if _canon(config) not in self._seen:
                    self._queue.append(config)
                    break
            else:
                raise SearchError(
                    f"The grid is exhausted: all {self.total} combinations were asked; check "
                    "remaining() before ask()."
                )
        suggestion = super().ask()
        self._seen.add(_canon(suggestion.config))
        return suggestion

    def remaining(self) -> int:
        return self.total - len(self._seen)

    def add(self, config: Mapping[str, Any], value: float | None, state: TrialState, *,
            step: int | None = None) -> None:
        super().add(config, value, state, step=step)
        self._seen.add(_canon(self.space.validate_config(config)))


def _optuna_factory(algorithm: str, kwargs: dict[str, Any]
                    ) -> Callable[[int | None], optuna.samplers.BaseSampler]:
    import optuna

    samplers = optuna.samplers
    defaults: dict[str, dict[str, Any]] = {
        # constant_liar keeps concurrently asked TPE trials apart.
        "tpe": {"constant_liar": True},
        "cmaes": {"warn_independent_sampling": False},
        "qmc": {"scramble": True, "warn_independent_sampling": False},
        "gp": {},
        "random": {},
    }
    classes: dict[str, Any] = {"tpe": samplers.TPESampler, "cmaes": samplers.CmaEsSampler,
                               "qmc": samplers.QMCSampler, "gp": samplers.GPSampler,
                               "random": samplers.RandomSampler}
    options = {**defaults[algorithm], **kwargs}

    def factory(seed: int | None) -> optuna.samplers.BaseSampler:
        if seed is None and algorithm == "qmc":  # else Optuna warns on every unseeded search
            seed = random.SystemRandom().randrange(2**31)
        with _quiet():
            sampler: optuna.samplers.BaseSampler = classes[algorithm](seed=seed, **options)
            return sampler

    try:
        inspect.signature(classes[algorithm]).bind(seed=None, **options)
    except TypeError as e:
        raise SearchError(
            f"Bad option for algorithm={algorithm!r}: {e}. The options are the keyword "
            f"arguments of optuna.samplers.{classes[algorithm].__name__}."
        ) from e
    return factory


_NEEDS = {"cmaes": ("cmaes", "pip install cmaes"),
          "gp": ("torch", "pip install 'kale-ext[torch]' (a CPU build of torch is enough)")}
ALGORITHMS = ("random", "grid", "tpe", "cmaes", "qmc", "gp")


def make_sampler(algorithm: str, space: Space | Mapping[str, Any], *, mode: str,
                 seed: int | None = None, **kwargs: Any) -> Sampler:
    """Build the sampler of a search.

    Parameters
    ----------
    algorithm
        ``"random"``, ``"grid"`` (every combination of grid/choice/int dimensions), ``"tpe"``,
        ``"cmaes"``, ``"qmc"`` (scrambled Sobol) or ``"gp"`` (Gaussian process; needs torch).
    space
        A :class:`Space` or the dict to build one from.
    mode
        ``"min"`` or ``"max"``: the direction of the search's metric.
    seed
        Seed for repeatable searches.
    **kwargs
        Passed to the Optuna sampler (e.g. ``n_startup_trials=5`` for TPE).
    """
    if mode not in ("min", "max"):
        raise SearchError(f"mode must be 'min' or 'max', but got mode={mode!r}.")
    if algorithm not in ALGORITHMS:
        raise SearchError(
            f"Unknown search algorithm {algorithm!r}; available: {', '.join(ALGORITHMS)}."
        )
    space = space if isinstance(space, Space) else Space(space)
    if algorithm == "grid":
        if kwargs:
            raise SearchError(f"algorithm='grid' takes no options, but got {sorted(kwargs)}.")
        return GridSampler(space, mode=mode, seed=seed)
    if algorithm in _NEEDS and importlib.util.find_spec(_NEEDS[algorithm][0]) is None:
        module, hint = _NEEDS[algorithm]
        raise SearchError(f"algorithm={algorithm!r} needs the {module!r} package: {hint}.")
    return OptunaSampler(algorithm, space, _optuna_factory(algorithm, kwargs), mode=mode,
                         seed=seed)
