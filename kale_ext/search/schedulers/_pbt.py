"""Population based training (Jaderberg et al., 2017, arXiv:1711.09846)."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping
from typing import Any

from kale_ext._errors import SearchError, SpaceError
from kale_ext.search._domains import Choice, _decode
from kale_ext.search._ranges import Domain, Integer, Uniform, _same
from kale_ext.search._space import Space
from kale_ext.search.schedulers._base import Scheduler, check_number
from kale_ext.trial import CONTINUE, Action, Decision, TrialState

Mutation = Domain | list[Any]


def _domain_at(space: Space, name: str) -> Domain | None:
    node: Any = space.spec
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Domain) else None


def _flat_domains(space: Space, node: Mapping[str, Any] | None = None,
                  prefix: str = "") -> dict[str, Domain]:
    out: dict[str, Domain] = {}
    for key, spec in (space.spec if node is None else node).items():
        if isinstance(spec, Choice) and spec.conditional:
            continue  # a branch switch is no small step: PBT leaves it alone
        if isinstance(spec, Domain):
            out[prefix + key] = spec
        elif isinstance(spec, Mapping):
            out.update(_flat_domains(space, spec, f"{prefix}{key}."))
    return out


class PBT(Scheduler):
    """Population based training: poor trials copy a good one and perturb its params.

    Every ``perturbation_interval`` steps of a trial, the population (trials with a
    reported value, failed ones excluded) is ranked by its latest values. A trial in the
    bottom ``quantile`` gets ``Decision(EXPLOIT, source_trial=<a random trial of the top
    quantile>, params=<the source's config, explored>)``: the driver restarts it from the
    source's checkpoint with those params. Exploring changes each mutated parameter: with
    probability ``resample_probability`` (or when the value is not a number) it is
    resampled from its domain or list; otherwise a continuous value is multiplied by 0.8 or
    1.2 (clipped to its domain) and a list value moves to a neighbouring entry.

    Parameters
    ----------
    perturbation_interval
        Steps between two perturbation checks of one trial.
    quantile
        Fraction of the population in the bottom and the top group, in (0, 0.5].
    hyperparam_mutations
        Flat parameter name (``"opt.lr"``) -> a domain or a list of values; ``None`` takes
        the domain from ``space``. Empty: every non-conditional domain of ``space``.
    resample_probability
        Chance of resampling instead of perturbing.
    space
        The search space, to check the mutations against it and to fill in defaults.
    seed
        Seed of the choice of sources and perturbations.
    """

    type_name = "PBT"

    def __init__(self, perturbation_interval: float, quantile: float = 0.25,
                 hyperparam_mutations: Mapping[str, Mutation | None] | None = None,
                 resample_probability: float = 0.25,
                 space: Space | Mapping[str, Any] | None = None,
                 seed: int | None = None) -> None:
        super().__init__()
        check_number("perturbation_interval", perturbation_interval, low=0)
        check_number("quantile", quantile, low=0)
        check_number("resample_probability", resample_probability, low=0, inclusive=True)
        if quantile > 0.5 or resample_probability > 1:
            raise SearchError(
                f"PBT needs 0 < quantile <= 0.5 and 0 <= resample_probability <= 1, but got "
                f"quantile={quantile!r}, resample_probability={resample_probability!r}."
            )
        self.perturbation_interval, self.quantile = perturbation_interval, quantile
        self.resample_probability, self.seed = resample_probability, seed
        self.space = None if space is None else space if isinstance(space, Space) \
            else Space(space)
        self.mutations = self._check_mutations(dict(hyperparam_mutations or {}))
        self._rng = random.Random(seed)
        self.params: dict[int, dict[str, Any]] = {}
        self._scores: dict[int, float] = {}
        self._steps: dict[int, int] = {}
        self._last_perturbation: dict[int, float] = {}
        self._failed: set[int] = set()

    def _check_mutations(self, mutations: dict[str, Any]) -> dict[str, Mutation]:
        if not mutations:
            if self.space is None:
                raise SearchError("PBT needs hyperparam_mutations={name: domain or list} "
                                  "or a space whose domains it may mutate.")
            return dict(_flat_domains(self.space))
        out: dict[str, Mutation] = {}
        for name, spec in mutations.items():
            path = f"hyperparam_mutations[{name!r}]"
            in_space = None if self.space is None else _domain_at(self.space, str(name))
            if spec is None:
                if in_space is None:
                    raise SearchError(f"{path} is None but the space has no domain {name!r}.")
                spec = in_space
            if isinstance(spec, Choice) and spec.conditional:
                raise SearchError(f"{path}: a conditional choice cannot be mutated.")
            try:
                if isinstance(spec, Domain):
                    spec._check(path)
                elif isinstance(spec, list | tuple) and spec:
                    spec = Choice(list(spec))
                    spec._check(path)
                    for value in spec.options:
                        if in_space is not None:
                            in_space.check_value(value, str(name))
                    spec = list(spec.options)
                else:
                    raise SpaceError(f"{path} must be a domain or a non-empty list, got {spec!r}.")
            except SpaceError as e:
                raise SearchError(f"PBT mutation {name!r} is invalid: {e}") from e
            out[str(name)] = spec
        return out

    # -- bookkeeping ----------------------------------------------------------------------
    def on_trial_add(self, trial: int, params: Mapping[str, Any]) -> None:
        super().on_trial_add(trial, params)
        self.params[trial] = copy.deepcopy(dict(params))

    def _forget(self, trial: int) -> None:
        for table in (self._scores, self._steps, self._last_perturbation):
            table.pop(trial, None)
        self._failed.discard(trial)

    def on_trial_end(self, trial: int, state: TrialState) -> None:
        if state is TrialState.FAILED:  # its checkpoint may be broken: no source
            self._failed.add(trial)

    # -- the policy -----------------------------------------------------------------------
    def _decide(self, trial: int, step: int, value: float, score: float) -> Decision:
        self._scores[trial], self._steps[trial] = score, step
        last = self._last_perturbation.get(trial, 0)
        if step < last:  # restarted from an earlier checkpoint
            last = self._last_perturbation[trial] = step
        if step - last < self.perturbation_interval:
            return CONTINUE
        self._last_perturbation[trial] = step
        population = sorted((t for t in self._scores if t not in self._failed),
                            key=lambda t: (self._scores[t], -t))
        size = min(math.ceil(len(population) * self.quantile), len(population) // 2)
        if size == 0 or trial not in population[:size]:
            return CONTINUE
        source = self._rng.choice(population[-size:])
        new, changes = self.explore(self.params.get(source, {}))
        self.params[trial] = new
        # Its score stays until it reports with the new params: copying the source's would
        # let every exploited trial crowd the top of the ranking.
        self._last_perturbation[trial] = self._steps.get(source, step)
        return Decision(Action.EXPLOIT, (
            f"PBT at step {step}: {self._name}={self.value_of(score):.6g} is in the bottom "
            f"{self.quantile:.0%} of {len(population)} trials; exploiting trial {source} "
            f"({self._name}={self.value_of(self._scores[source]):.6g})"
            + (f" with {', '.join(changes)}" if changes else "")), source, new)

    def explore(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Return a perturbed copy of a nested config, and ``"name a -> b"`` per change."""
        flat = Space.flatten(params)
        changes = []
        for name, spec in self.mutations.items():
            if name not in flat:
                continue
            old = flat[name]
            flat[name] = self._perturb(spec, old)
            changes.append(f"{name} {old!r} -> {flat[name]!r}")
        return Space.unflatten(flat), changes

    def _perturb(self, spec: Mutation, old: Any) -> Any:
        rng = self._rng
        resample = rng.random() < self.resample_probability
        options = spec.options if isinstance(spec, Choice) else spec
        if isinstance(options, list):
            index = next((i for i, o in enumerate(options) if _same(o, old)), None)
            if resample or index is None:
                return copy.deepcopy(rng.choice(options))
            index = min(max(index + rng.choice((-1, 1)), 0), len(options) - 1)
            return copy.deepcopy(options[index])
        numeric = isinstance(old, int | float) and not isinstance(old, bool)
        if isinstance(spec, Uniform):
            low, high = float(spec.low), float(spec.high)
            if resample or not numeric:
                if spec.log:
                    return math.exp(rng.uniform(math.log(low), math.log(high)))
                return rng.uniform(low, high)
            return min(max(old * rng.choice((0.8, 1.2)), low), high)
        assert isinstance(spec, Integer)
        low, high, step = int(spec.low), int(spec.high), int(spec.step)
        if resample or not numeric:
            if spec.log:
                return min(max(round(math.exp(rng.uniform(math.log(low), math.log(high)))),
                               low), high)
            return rng.randrange(low, high + 1, step)
        factor = rng.choice((0.8, 1.2))
        moved = round((old * factor - low) / step) * step + low
        if moved == old:  # small ints would never move by 20%
            moved = old + step * (1 if factor > 1 else -1)
        return int(min(max(moved, low), high))

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "perturbation_interval": self.perturbation_interval,
                "quantile": self.quantile,
                "hyperparam_mutations": {
                    k: v.to_dict() if isinstance(v, Domain) else v
                    for k, v in self.mutations.items()},
                "resample_probability": self.resample_probability,
                "space": None if self.space is None else self.space.to_dict(),
                "seed": self.seed}

    @classmethod
    def from_params(cls, args: dict[str, Any]) -> Scheduler:
        args = dict(args)
        mutations = {k: _decode(v, k) if isinstance(v, Mapping) else v
                     for k, v in dict(args.pop("hyperparam_mutations", None) or {}).items()}
        space = args.pop("space", None)
        return cls(hyperparam_mutations=mutations,
                   space=None if space is None else Space.from_dict(space), **args)
