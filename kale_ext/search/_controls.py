"""The controls of a search's driver: stop, pause, resume or restart the search or a trial.

Called by :class:`kale_ext.Search` in the kernel and, for commands from other
processes, by the driver's channel; every one takes the driver's lock.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SearchError
from kale_ext.trial import Action, Decision, TrialState

if TYPE_CHECKING:
    from kale_ext.channel import ChannelServer
    from kale_ext.search._runs import TrialRun, TrialRuns
    from kale_ext.store import Store


class DriverControls(ABC):
    """The controls of :class:`kale_ext.search._driver.Driver`, which provides the state."""

    lock: threading.RLock
    trials: TrialRuns
    store: Store
    stopping: bool
    paused: bool
    done: threading.Event
    error: BaseException | None

    @property
    @abstractmethod
    def name(self) -> str:
        """The search's name."""

    @abstractmethod
    def _server(self) -> ChannelServer:
        """Return the search's open metric channel, whose replies carry the decisions."""

    def _check_alive(self) -> None:
        """Raise when the driver ended on an error: a control cannot act on a dead search."""
        if self.done.is_set() and self.error is not None:
            raise SearchError(f"Search {self.name!r} has ended: {type(self.error).__name__}: "
                              f"{self.error}. Resume it with kale.Search.resume() once fixed.")

    def tell_trial(self, run: TrialRun, decision: Decision, *, requeue: bool = False) -> None:
        """Ask a running trial to end with ``decision`` at its next report or heartbeat."""
        run.pending_action = decision
        run.by_scheduler = False
        run.requeue = requeue
        self._server().set_decision(run.number, decision.to_dict())

    def stop(self, trial: int | None = None) -> None:
        """Stop one trial (pending, running or paused), or the whole search.

        With ``trial`` None, running trials are told to stop and waiting ones are
        stopped.
        """
        self._check_alive()
        with self.lock:
            if trial is None:
                self.stopping = True
                reason = "search stopped by the user"
                for run in self.trials.in_state(TrialState.RUNNING):
                    self.tell_trial(run, Decision(Action.STOP, reason))
                for run in self.trials.in_state(TrialState.PENDING, TrialState.PAUSED):
                    self.trials.transition(run, TrialState.STOPPED, reason)
                return
            run = self.trials.get(trial)
            if run.state is TrialState.RUNNING:
                self.tell_trial(run, Decision(Action.STOP, "stopped by the user"))
            elif run.state in (TrialState.PENDING, TrialState.PAUSED):
                self.trials.transition(run, TrialState.STOPPED, "stopped by the user")
                self.trials.tell(run)
            else:
                raise SearchError(f"Trial {run.number} is {run.state.label}; only pending, "
                                  "running or paused trials can be stopped.")

    def pause(self, trial: int | None = None) -> None:
        """Pause one trial, or the whole search.

        A paused trial checkpoints and leaves its worker. A paused search starts no new
        trials and its running ones pause.
        """
        self._check_alive()
        with self.lock:
            if trial is None:
                self.paused = True
                for run in self.trials.in_state(TrialState.RUNNING):
                    self.tell_trial(run, Decision(Action.PAUSE, "paused by the user"))
                return
            run = self.trials.get(trial)
            if run.state is TrialState.RUNNING:
                self.tell_trial(run, Decision(Action.PAUSE, "paused by the user"))
            elif run.state is TrialState.PENDING:
                self.trials.transition(run, TrialState.PAUSED, "paused by the user")
            else:
                raise SearchError(f"Trial {run.number} is {run.state.label}; only running "
                                  "or pending trials can be paused.")

    def resume(self, trial: int | None = None) -> None:
        """Resume a paused trial from its checkpoint, or the whole paused search."""
        self._check_alive()
        with self.lock:
            if trial is None:
                self.paused = False
                targets = self.trials.in_state(TrialState.PAUSED)
            else:
                run = self.trials.get(trial)
                if run.state is not TrialState.PAUSED:
                    raise SearchError(f"Trial {run.number} is {run.state.label}, not paused.")
                targets = [run]
            for run in targets:
                self.trials.transition(run, TrialState.PENDING, "resumed by the user")

    def restart(self, trial: int, params: Mapping[str, Any]) -> None:
        """Run ``trial`` again from scratch with ``params`` changed.

        ``params`` is a nested mapping of new values, checked against the search space
        first.
        """
        self._check_alive()
        run = self.trials.get(trial)
        config = self.trials.edited(run, params)
        with self.lock:
            run.config = config
            run.checkpoint = None
            self.store.transition(run.number, run.state, "parameters edited by the user",
                                  params=config)
            if run.state is TrialState.RUNNING:
                self.tell_trial(run, Decision(Action.STOP, "restarted by the user"),
                                requeue=True)
            else:
                run.retries = 0
                self.trials.transition(run, TrialState.PENDING, "restarted by the user")

