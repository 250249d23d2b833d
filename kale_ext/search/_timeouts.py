"""Trials that run too long or do not stop when told: their timeout and their hard stop.

A trial hears the driver's decisions only at its next ``report()`` (or heartbeat
acknowledgement, read at its next report). One stuck in a long epoch, a C-level hang or
a deadlocked data loader never reaches it. So:

- past the search's ``trial_timeout`` (seconds from the start of its current attempt:
  its first message, so time in a queue or launching ranks does not count) a trial is
  told to stop, and it ends FAILED with "timeout after N s";
- a trial told to end (by that timeout, a user's stop, pause or restart, the scheduler)
  that is still running ``stop_grace`` seconds later is hard-stopped: the cluster ends
  the worker process that runs it (:meth:`kale_ext.clusters.Cluster.hard_stop`), and the
  backend restarts or replaces that worker. The trial then settles as it was told
  (stopped, paused, requeued, pruned) or, for the timeout, as failed;
- an attempt the driver gave up on while it may still run (no heartbeat, then retried
  or failed) is superseded: its reports hear STOP, and once ``stop_grace`` has passed
  without its ``end``, it is hard-stopped in the same way.

Other trials that ran in a process ended this way (a Dask worker with several threads,
a trial that shared an engine) did nothing wrong: they are requeued, with no retry
counted. A backend that cannot end a running task (see ``Cluster.hard_stop``) leaves the
task running: the trial is then settled as if it had stopped, the log names the worker
it may still occupy.

:class:`Timeouts` decides and starts the hard stops (each on a thread of its own, so a
slow worker restart never holds up the driver's loop); the driver calls it under its
lock, from its loop.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SearchError
from kale_ext.trial import Action, Decision, TrialState

if TYPE_CHECKING:
    from kale_ext.channel import ChannelServer
    from kale_ext.clusters import Cluster
    from kale_ext.search._events import SearchEvents
    from kale_ext.search._runs import TrialRun, TrialRuns

logger = logging.getLogger(__name__)

DEFAULT_GRACE = 30.0
"""Seconds a trial told to end may run on before it is hard-stopped."""

_VICTIM_MEMORY = 300.0  # seconds a hard-stopped worker's other trials count as collateral

Attempt = tuple[int, int]  # (trial, attempt)


def check_settings(trial_timeout: Any, stop_grace: Any) -> tuple[float | None, float]:
    """Return ``trial_timeout`` and ``stop_grace`` as seconds; raise naming a bad value.

    Raises
    ------
    SearchError
        When ``trial_timeout`` is not None or a positive finite number, or ``stop_grace``
        is not a finite number of 0 or more.
    """
    def seconds(name: str, value: Any, *, zero: bool) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value) and (value >= 0 if zero else value > 0)
        if not ok:
            rule = "0 or more" if zero else "more than 0"
            example = "stop_grace=30" if zero else "trial_timeout=3600 (an hour)"
            raise SearchError(
                f"{name} must be a finite number of seconds, {rule}"
                + ("" if zero else ", or None for no limit")
                + f", but got {value!r} ({type(value).__name__}). Pass e.g. {example}.")
        return float(value)

    timeout = None if trial_timeout is None else seconds("trial_timeout", trial_timeout,
                                                         zero=False)
    return timeout, seconds("stop_grace", stop_grace, zero=True)


@dataclass
class HardStop:
    """One hard stop: of which attempt, on which worker, started when, and how it went."""

    trial: int
    attempt: int
    worker: str | None
    when: float
    done: bool = False
    result: str = ""
    error: str | None = None


@dataclass
class Superseded:
    """An attempt the driver gave up on while its task may still run."""

    trial: int
    attempt: int
    worker: str | None
    future: Future[Any] | None
    when: float


class Timeouts:
    """The trial timeout and hard stops of one search's driver.

    Parameters
    ----------
    trial_timeout
        Seconds an attempt may run; None: no limit.
    stop_grace
        Seconds a trial told to end may run on before it is hard-stopped.
    cluster
        Returns the search's cluster (read when a hard stop starts).
    wake
        Wakes the driver's loop (a hard stop has finished).
    """

    def __init__(self, trial_timeout: float | None, stop_grace: float,
                 cluster: Callable[[], Cluster], wake: Callable[[], None]) -> None:
        self.trial_timeout = trial_timeout
        self.grace = stop_grace
        self._cluster = cluster
        self._wake = wake
        self.told: dict[Attempt, float] = {}  # when each attempt was first seen told to end
        self.timed_out: set[Attempt] = set()
        self.stops: dict[Attempt, HardStop] = {}
        self.victims: dict[str, HardStop] = {}  # worker name -> the latest hard stop on it
        self.superseded: dict[Attempt, Superseded] = {}

    @classmethod
    def of(cls, spec: Any, wake: Callable[[], None]) -> Timeouts:
        """Return the timeouts of the search ``spec`` (``trial_timeout``, ``stop_grace``)."""
        timeout, grace = check_settings(getattr(spec, "trial_timeout", None),
                                        getattr(spec, "stop_grace", DEFAULT_GRACE))
        return cls(timeout, grace, lambda: spec.cluster, wake)

    # -- each pass of the driver's loop ----------------------------------------------

    def check(self, runs: Mapping[int, TrialRun], events: SearchEvents,
              server: ChannelServer) -> list[TrialRun]:
        """Time out, and hard-stop, what must be; return the runs to settle now.

        Those are the runs whose hard stop failed (the backend cannot end their task):
        the driver settles them with :meth:`settle` as if they had stopped.
        """
        now = time.time()
        settle = []
        for run in runs.values():
            if run.state is not TrialState.RUNNING or run.future is None:
                continue
            key = (run.number, run.attempt)
            # From its first message: placement, a queue, a launch of ranks do not count.
            if self.trial_timeout is not None and key not in self.timed_out \
                    and run.started is not None and now - run.started > self.trial_timeout:
                self.timed_out.add(key)
                reason = (f"Trial {run.number}: timeout after {self.trial_timeout:g} s "
                          f"(the search's trial_timeout)")
                server.set_decision(run.number, events.fail(run, reason).to_dict())
            if run.pending_action is not None and run.pending_action.action is not \
                    Action.CONTINUE:
                self.told.setdefault(key, now)
            told = self.told.get(key)
            stop = self.stops.get(key)
            if stop is None and told is not None and now - told >= self.grace:
                action = run.pending_action.action.value if run.pending_action else "stop"
                self._hard_stop(run.number, run.attempt, run.worker, run.future,
                                f"it was told to {action} {now - told:.0f} s ago and has not",
                                events)
            elif stop is not None and stop.done and stop.error is not None:
                settle.append(run)
        for key, old in list(self.superseded.items()):
            if now - old.when < self.grace:
                continue
            del self.superseded[key]
            if key in events.ended_attempts or old.worker is None or old.future is None:
                continue  # it ended, or nothing says where it runs
            self._hard_stop(old.trial, old.attempt, old.worker, old.future,
                            "it was superseded and has not ended", events)
        return settle

    def _hard_stop(self, trial: int, attempt: int, worker: str | None,
                   future: Future[Any], why: str, events: SearchEvents) -> None:
        # Every rank's process: a distributed trial's other ranks would wait for rank 0.
        ranks = events.rank_workers.get((trial, attempt), {})
        workers: list[str | None] = [ranks[r] for r in sorted(ranks)] or [worker]
        stop = HardStop(trial, attempt, workers[0], time.time())
        self.stops[(trial, attempt)] = stop
        for name in workers:
            if name is not None:
                self.victims[name] = stop
        shown = ", ".join(w or "its worker" for w in workers)
        logger.warning("Trial %d (attempt %d) on %s: %s; ending its worker process "
                       "(stop_grace=%g s)", trial, attempt, shown, why, self.grace)
        cluster = self._cluster()

        def act() -> None:
            done, failed = [], []
            try:
                for name in workers:  # each on its own: one gone must not spare another
                    try:
                        done.append(cluster.hard_stop(future, worker=name))
                    except Exception as e:  # the backend cannot, or that rank has ended
                        failed.append(f"{type(e).__name__}: {e}")
                stop.result = "; ".join(done)
                if done:
                    logger.warning("Trial %d (attempt %d): %s", trial, attempt, stop.result)
                if failed:
                    logger.error("Trial %d (attempt %d): a process could not be hard-stopped:"
                                 " %s; its task may still occupy %s", trial, attempt,
                                 "; ".join(failed), shown)
            finally:
                if not done:  # the trial is settled without it
                    stop.error = "; ".join(failed) or "the hard stop did not run"
                stop.done = True
                self._wake()

        threading.Thread(target=act, name=f"kale-hard-stop-{trial}-{attempt}",
                         daemon=True).start()

    # -- how the attempts end ----------------------------------------------------------

    def supersede(self, run: TrialRun, future: Future[Any] | None,
                  server: ChannelServer) -> None:
        """Note that ``run``'s current attempt is given up while its task may still run.

        It hears STOP at once (at its next message), and is hard-stopped after the grace
        period unless it ends.
        """
        server.set_decision((run.number, run.attempt),
                            Decision(Action.STOP, f"attempt {run.attempt} of trial "
                                     f"{run.number} was given up by the driver").to_dict())
        self.superseded[(run.number, run.attempt)] = Superseded(
            run.number, run.attempt, run.worker, future, time.time())

    def killed(self, run: TrialRun, trials: TrialRuns, events: SearchEvents) -> bool:
        """Settle ``run``, whose task failed, if a hard stop ended it; say whether it did.

        The hard-stopped trial settles as it was told; another trial of the same worker
        is requeued, with no retry counted.
        """
        if self.settled_as_told(run, trials, events):
            return True
        victim = self.victims.get(run.worker or "")
        if victim is None or time.time() - victim.when > _VICTIM_MEMORY or \
                run.submitted > victim.when or \
                (victim.trial, victim.attempt) == (run.number, run.attempt):
            return False  # not in the process when it was ended
        events.take_failure(run, ended=False)
        trials.transition(run, TrialState.PENDING,
                          f"requeued: its worker {run.worker} was ended to hard-stop trial "
                          f"{victim.trial}")
        return True

    def settled_as_told(self, run: TrialRun, trials: TrialRuns, events: SearchEvents) -> bool:
        """Settle ``run`` as it was told if its attempt was hard-stopped; say whether it was.

        Its outcome is then the kill's, not the trial's: a distributed trial whose rank 0
        was ended returns the error of its ranks, a one-rank trial fails as lost.
        """
        key = (run.number, run.attempt)
        stop = self.stops.get(key)
        if stop is None:
            self.forget(key)
            return False
        self.settle(run, trials, events, f"hard-stopped after {self.grace:g} s: "
                    f"{stop.result or 'its worker process was ended'}")
        return True

    def settle(self, run: TrialRun, trials: TrialRuns, events: SearchEvents,
               note: str) -> None:
        """Settle ``run``'s attempt as what it was told: failed on timeout, else its action."""
        key = (run.number, run.attempt)
        stop = self.stops.get(key)
        if stop is not None and stop.error is not None:
            note = f"not hard-stopped ({stop.error}); its task may still run on " \
                   f"{run.worker or 'its worker'}"
        if run.future is not None:
            run.future.cancel()
            run.future = None
        self.forget(key)
        failure = events.take_failure(run, ended=False)
        if failure is not None:
            trials.transition(run, TrialState.FAILED, f"{failure}; {note}",
                              error=f"{failure}; {note}")
            trials.tell(run)
            return
        told = run.pending_action or Decision(Action.STOP, "stopped")
        trials.end(run, {"status": "stopped", "action": told.action.value,
                         "reason": f"{told.reason or told.action.value}; {note}"})

    def forget(self, key: Attempt) -> None:
        """Drop what is known of an attempt that has ended (its hard stop is kept apart)."""
        self.told.pop(key, None)
        self.timed_out.discard(key)
        self.stops.pop(key, None)
        now = time.time()
        for worker, stop in list(self.victims.items()):
            if now - stop.when > _VICTIM_MEMORY:
                del self.victims[worker]
