"""What the messages of a search's trials mean to its driver.

The messages are starts, checkpoints, reports to the scheduler, and control commands
from other processes.

Called by :class:`kale_ext.trial.Ingest` on the channel server's thread, under the
driver's lock, after each batch is stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kale_ext._errors import KaleError, StoreError
from kale_ext.channel import Message
from kale_ext.search._runs import TrialRun, TrialRuns
from kale_ext.trial import (
    STEP_KEYS,
    Action,
    Decision,
    LaunchTimes,
    TrialEvents,
    TrialState,
    check_step,
)

logger = logging.getLogger(__name__)


class SearchEvents(TrialEvents):
    """The trial events of a search.

    Parameters
    ----------
    trials
        The search's runs, scheduler and store.
    control
        Runs a control command (``{"action", "trial", "params"}``) and returns what it
        did; raises when it is refused.
    store_failed
        Called when the store cannot be written; the driver ends the search.

    Attributes
    ----------
    failures : dict
        Why the current attempt of a trial must end as failed (a report the driver cannot
        use, e.g. a NaN step), by trial; the driver reads it when the attempt ends.
    missing : dict
        Trials whose reports so far lack the search's metric, with what they did report:
        warned at the first such report, failed if the trial ends without the metric.
    """

    def __init__(self, trials: TrialRuns, control: Callable[[dict[str, Any]], str],
                 store_failed: Callable[[StoreError], None] | None = None) -> None:
        self.trials = trials
        self.runs = trials.runs
        self.control = control
        self.store_failed = store_failed
        self.failures: dict[int, str] = {}
        self.missing: dict[int, str] = {}
        self.ended_attempts: set[tuple[int, int]] = set()  # superseded attempts that ended
        self.rank_workers: dict[tuple[int, int], dict[int, str]] = {}  # by attempt, by rank
        self._checked: set[int] = set()  # trials that reported the metric
        self.launch = LaunchTimes(trials.store)  # where each trial's launch went

    def attempt(self, trial: int) -> int | None:
        run = self.runs.get(trial)
        return run.attempt if run is not None else None

    def on_superseded(self, message: Message, current: int) -> Decision:
        if message.kind == "end":  # it heard its stop: no hard stop needed
            self.ended_attempts.add((message.trial, message.attempt))
        return super().on_superseded(message, current)

    def on_seen(self, message: Message) -> None:
        self.runs[message.trial].last_seen = time.time()

    def on_start(self, message: Message) -> None:
        run = self.runs[message.trial]
        run.started = run.last_seen
        run.worker = message.data.get("worker") or message.data.get("host")
        if run.worker is not None:  # a hard stop ends every rank's process
            self.rank_workers.setdefault((run.number, run.attempt), {})[message.rank] = \
                str(run.worker)
        # The trial's store row only: the run is RUNNING since its submission.
        self.trials.store.transition(run.number, TrialState.RUNNING, f"started on {run.worker}",
                                     worker=run.worker)
        self.launch.on_start(message, run.submitted)

    def on_checkpoint(self, trial: int, step: int | None, path: str) -> None:
        self.runs[trial].checkpoint = path

    def on_report(self, message: Message) -> Decision | None:
        self.launch.on_report(message)
        if message.rank != 0:  # rank 0 speaks for a distributed trial
            return None
        run, data = self.runs[message.trial], message.data
        if run.number in self.failures:
            return run.pending_action
        run.metrics.update(data)
        name = next((key for key in STEP_KEYS if data.get(key) is not None), None)
        try:
            step = check_step(data[name], name) if name is not None else None
        except KaleError as e:
            return self.fail(run, f"Trial {run.number}: {e}")
        metric = self.trials.metric
        if run.number not in self._checked:
            if metric in data:
                self._checked.add(run.number)
                self.missing.pop(run.number, None)
            elif run.number not in self.missing:
                # Told at once; per-batch rows may come before the metric, so the trial
                # fails only if it ends without ever reporting it.
                seen = ", ".join(repr(str(k)) for k in list(data)[:20]) or "no metrics"
                self.missing[run.number] = (
                    f"Trial {run.number} reported {seen} but never the search's metric "
                    f"{metric!r}: the search cannot rank it. Report {metric}=... from the "
                    "trial, or create the search with metric= one of the names above.")
                logger.warning("Trial %s's first report has %s but not the search's metric "
                               "%r; it fails if it ends without reporting it",
                               run.number, seen, metric)
        value = data.get(metric)
        if step is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        run.last_step = step
        if run.pending_action is not None:
            return run.pending_action
        decision = self.trials.scheduler.on_report(run.number, step, float(value))
        if decision.action is Action.CONTINUE:
            return None
        run.pending_action = decision
        run.by_scheduler = True
        return decision

    def take_failure(self, run: TrialRun, *, ended: bool) -> str | None:
        """Return (and forget) why ``run``'s attempt must count as failed, if it must.

        ``ended``: the attempt returned on its own, so a metric it never reported is a
        failure too (not when it was stopped or its worker was lost).
        """
        missing = self.missing.pop(run.number, None)
        failure = self.failures.pop(run.number, None)
        if failure is None and ended and run.pending_action is None:
            return missing
        return failure

    def fail(self, run: TrialRun, reason: str) -> Decision:
        """End ``run``'s attempt: it hears a stop, and the driver settles it as failed.

        Returns the decision; the caller sends it unless it rides on a reply already.
        """
        self.failures[run.number] = reason
        logger.warning("%s", reason)  # seen now; the store has it once the attempt ends
        decision = Decision(Action.STOP, reason)
        run.pending_action = decision
        run.by_scheduler = False
        run.requeue = False
        return decision

    def on_store_failed(self, error: StoreError) -> None:
        if self.store_failed is not None:
            self.store_failed(error)

    def pending(self) -> Mapping[int, Decision]:
        return {run.number: run.pending_action for run in self.runs.values()
                if run.pending_action is not None and run.state is TrialState.RUNNING}

    def on_control(self, data: dict[str, Any]) -> Decision:
        try:
            answer = {"ok": True, "message": self.control(data)}
        except Exception as e:  # the caller reads why; the search goes on
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return Decision(Action.CONTINUE, json.dumps(answer))
