"""A search's trials as its driver keeps them.

That is the live runs, their transitions, and what the sampler and the scheduler are
told about them.

Every method runs under the driver's lock; nothing here does I/O beyond the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SearchError
from kale_ext.trial import Action, Decision, TrialState

if TYPE_CHECKING:
    from kale_ext.search._samplers import Sampler
    from kale_ext.search._space import Space
    from kale_ext.search.schedulers import Scheduler
    from kale_ext.store import Store, TrialRecord


@dataclass
class TrialRun:
    """The driver's live view of one trial."""

    number: int
    config: dict[str, Any]
    token: int | None = None  # the sampler's number for it, until told how it ended
    state: TrialState = TrialState.PENDING
    attempt: int = -1  # the current attempt; -1 before the first submission
    retries: int = 0
    future: Future[Any] | None = None
    submitted: float = 0.0
    started: float | None = None
    last_seen: float = 0.0
    last_step: int = -1
    checkpoint: str | None = None
    pending_action: Decision | None = None  # what the driver told it, applied when it ends
    by_scheduler: bool = False  # the pending action came from the scheduler, not the user
    requeue: bool = False  # restart or resume: submit again once the current attempt ends
    worker: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: TrialRecord, checkpoint: str | None = None) -> TrialRun:
        """Return the run of a trial as the store recorded it."""
        return cls(number=record.number, config=record.params, state=TrialState(record.state),
                   attempt=record.attempt, retries=record.retries, checkpoint=checkpoint,
                   metrics=dict(record.last), worker=record.worker)


class TrialRuns:
    """The runs of one search, keyed by trial number.

    With them are the sampler and scheduler that decide them and the store that records
    them.

    Parameters
    ----------
    name
        The search's name, for errors.
    store, sampler, scheduler, space
        Where transitions go, who suggests configs, who decides early stopping, and
        what configs must satisfy.
    metric
        The reported metric the sampler learns from.
    """

    def __init__(self, name: str, store: Store, sampler: Sampler, scheduler: Scheduler,
                 space: Space, metric: str) -> None:
        self.name = name
        self.store = store
        self.sampler = sampler
        self.scheduler = scheduler
        self.space = space
        self.metric = metric
        self.runs: dict[int, TrialRun] = {}

    def get(self, trial: int) -> TrialRun:
        """Return the run of ``trial``; raise :class:`kale.SearchError` naming the known ones."""
        if trial not in self.runs:
            raise SearchError(
                f"Search {self.name!r} has no trial {trial}; trials are "
                f"{sorted(self.runs) or 'none yet'}."
            )
        return self.runs[trial]

    def in_state(self, *states: TrialState) -> list[TrialRun]:
        """Return the runs in any of ``states``, by trial number."""
        return [r for _, r in sorted(self.runs.items()) if r.state in states]

    def new(self) -> TrialRun:
        """Add a new pending trial with the sampler's next config.

        It is added to the store and the scheduler.
        """
        suggestion = self.sampler.ask()
        run = TrialRun(number=len(self.runs), config=suggestion.config, token=suggestion.number)
        self.runs[run.number] = run
        self.store.add_trial(run.number, run.config)
        self.scheduler.on_trial_add(run.number, run.config)
        return run

    def transition(self, run: TrialRun, to: TrialState, reason: str, **fields: Any) -> None:
        """Move ``run`` to ``to`` and record it, with ``fields`` of the store's trial."""
        run.state = to
        self.store.transition(run.number, to, reason, **fields)

    def tell(self, run: TrialRun) -> None:
        """Tell the scheduler and the sampler how a finished run ended."""
        if not run.state.is_finished():
            return
        self.scheduler.on_trial_end(run.number, run.state)
        value = run.metrics.get(self.metric)
        value = float(value) if isinstance(value, int | float) else None
        step = run.last_step if run.last_step >= 0 else None
        if run.token is not None:
            self.sampler.tell(run.token, value, run.state, step=step)
            run.token = None
        else:  # a restarted or resumed trial: the sampler learns it as a new observation
            self.sampler.add(run.config, value, run.state, step=step)

    def end(self, run: TrialRun, outcome: Mapping[str, Any]) -> None:
        """Settle ``run`` by how its attempt ended (``run_trial``'s outcome)."""
        status = outcome.get("status")
        move = self.transition
        if status == "ok":
            move(run, TrialState.COMPLETED, "returned")
        elif status == "error":
            move(run, TrialState.FAILED, outcome.get("error", "error"),
                 error=outcome.get("traceback", ""))
        else:
            action = Action(outcome.get("action", "stop"))
            reason = outcome.get("reason", action.value)
            decided = run.pending_action
            if decided is not None and decided.action is Action.EXPLOIT:
                self.exploit(run, decided)
            elif run.requeue:
                move(run, TrialState.PENDING, reason)
            elif action is Action.PAUSE:
                move(run, TrialState.PAUSED, reason)
            elif action is Action.PRUNE:
                move(run, TrialState.PRUNED, reason)
            elif run.by_scheduler:  # the scheduler's budget was reached (e.g. ASHA's max_t)
                move(run, TrialState.COMPLETED, reason)
            else:
                move(run, TrialState.STOPPED, reason)
        self.tell(run)

    def edited(self, run: TrialRun, params: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``run``'s config with ``params`` (nested new values) merged in.

        The result is checked against the search space.
        """
        return self.space.validate_config(_merge(run.config, params))

    def exploit(self, run: TrialRun, decision: Decision) -> None:
        """PBT: queue ``run`` again with explored params, from the source's checkpoint."""
        source = self.runs.get(decision.source_trial) if decision.source_trial is not None \
            else None
        run.config = self.space.validate_config({**run.config, **decision.params}) \
            if decision.params else run.config
        run.checkpoint = source.checkpoint if source else run.checkpoint
        self.transition(run, TrialState.PENDING, decision.reason, params=run.config)

    def restore(self) -> None:
        """Rebuild the runs from the store after the driver died.

        Replay the scheduler's history, tell the sampler the past, and queue again what
        was running.
        """
        store, scheduler = self.store, self.scheduler
        checkpoints: dict[int, str] = {}
        for c in store.checkpoints():
            checkpoints[c.trial] = c.path  # in order: the latest wins
        for record in sorted(store.trials(), key=lambda r: r.number):
            run = TrialRun.from_record(record, checkpoints.get(record.number))
            self.runs[run.number] = run
            scheduler.on_trial_add(run.number, run.config)
        for row in store.metrics():
            value = row.values.get(self.metric)
            if row.rank == 0 and row.step is not None and isinstance(value, int | float):
                self.runs[row.trial].last_step = int(row.step)
                scheduler.on_report(row.trial, int(row.step), float(value))
        history = []
        for run in self.runs.values():
            if run.state.is_finished():
                scheduler.on_trial_end(run.number, run.state)
                value = run.metrics.get(self.metric)
                history.append((run.config, float(value) if isinstance(value, int | float)
                                else None, run.state))
            elif run.state is TrialState.RUNNING:
                self.transition(run, TrialState.PENDING,
                                "re-queued: the search's driver stopped while it ran"
                                + (f"; continues from {run.checkpoint}" if run.checkpoint
                                   else ""))
        self.sampler.restore(history)


def _merge(config: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(config)
    for key, value in params.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
