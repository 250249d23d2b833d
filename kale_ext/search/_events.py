"""What the messages of a search's trials mean to its driver.

The messages are starts, checkpoints, reports to the scheduler, and control commands
from other processes.

Called by :class:`kale_ext.trial.Ingest` on the channel server's thread, under the
driver's lock, after each batch is stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from kale_ext.channel import Message
from kale_ext.search._runs import TrialRuns
from kale_ext.trial import Action, Decision, TrialEvents, TrialState


class SearchEvents(TrialEvents):
    """The trial events of a search.

    Parameters
    ----------
    trials
        The search's runs, scheduler and store.
    control
        Runs a control command (``{"action", "trial", "params"}``) and returns what it
        did; raises when it is refused.
    """

    def __init__(self, trials: TrialRuns, control: Callable[[dict[str, Any]], str]) -> None:
        self.trials = trials
        self.runs = trials.runs
        self.control = control

    def attempt(self, trial: int) -> int | None:
        run = self.runs.get(trial)
        return run.attempt if run is not None else None

    def on_seen(self, message: Message) -> None:
        self.runs[message.trial].last_seen = time.time()

    def on_start(self, message: Message) -> None:
        run = self.runs[message.trial]
        run.started = run.last_seen
        run.worker = message.data.get("worker") or message.data.get("host")
        # The trial's store row only: the run is RUNNING since its submission.
        self.trials.store.transition(run.number, TrialState.RUNNING, f"started on {run.worker}",
                                     worker=run.worker)

    def on_checkpoint(self, trial: int, step: int | None, path: str) -> None:
        self.runs[trial].checkpoint = path

    def on_report(self, message: Message) -> Decision | None:
        if message.rank != 0:  # rank 0 speaks for a distributed trial
            return None
        run, data = self.runs[message.trial], message.data
        run.metrics.update(data)
        step = data.get("epoch", data.get("step"))
        value = data.get(self.trials.metric)
        if step is None or not isinstance(value, int | float):
            return None
        run.last_step = int(step)
        if run.pending_action is not None:
            return run.pending_action
        decision = self.trials.scheduler.on_report(run.number, int(step), float(value))
        if decision.action is Action.CONTINUE:
            return None
        run.pending_action = decision
        run.by_scheduler = True
        return decision

    def pending(self) -> Mapping[int, Decision]:
        return {run.number: run.pending_action for run in self.runs.values()
                if run.pending_action is not None and run.state is TrialState.RUNNING}

    def on_control(self, data: dict[str, Any]) -> Decision:
        try:
            answer = {"ok": True, "message": self.control(data)}
        except Exception as e:  # the caller reads why; the search goes on
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return Decision(Action.CONTINUE, json.dumps(answer))
