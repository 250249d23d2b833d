"""Walltime-aware trials: a trial leaves a worker about to retire, from its checkpoint.

A batch worker retires a little before its job's walltime (its lifetime; see
:meth:`kale_ext.clusters.Cluster.retire_times`). Some seconds before that (the
migration margin), the driver drains the worker (it gets no new trials) and asks each
trial running there to pause at its next report: the trial checkpoints, as it does
before reporting, and ends; it is queued again (PENDING) and its next attempt, on
another worker, starts from that checkpoint. This is a migration, neither a failure nor
a retry; its transition says ``migrated from <worker>: retires in N s``. A trial whose
worker retires before it could leave (it did not report in time) is requeued the same
way, from its latest checkpoint, and counted as a migration too.

The margin is ``kale.migration-margin`` (seconds, default 120), capped at a quarter of
the worker's lifetime so that short lifetimes (a one-minute test queue) still leave a
worker most of its life for work.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Protocol

from kale_ext import config
from kale_ext._errors import SearchError
from kale_ext.trial import Action, Decision, TrialState

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster
    from kale_ext.search._runs import TrialRun
    from kale_ext.store import Store

logger = logging.getLogger(__name__)

MIGRATED = "migrated from "  # how every migration's transition reason starts
DEFAULT_MARGIN = 120.0  # seconds before a worker retires at which its trials leave
_EVERY = 1.0  # seconds between looks at the workers' retire times


def margin_setting() -> float:
    """Return ``kale.migration-margin`` in seconds, checked."""
    value = config.get("migration-margin", DEFAULT_MARGIN)
    try:
        margin = float(value)
    except (TypeError, ValueError):
        margin = math.nan
    if not margin >= 0:
        raise SearchError(f"kale.migration-margin is {value!r}; it must be a number of "
                          "seconds >= 0 (0 turns migration off). Set it with "
                          "dask.config.set({'kale.migration-margin': 120}).")
    return margin


def margin_for(lifetime: float, margin: float) -> float:
    """Return the margin for a worker of ``lifetime`` seconds: at most a quarter of it."""
    return min(margin, lifetime / 4)


def retired_reason(run: TrialRun, error: BaseException) -> str:
    """Return the reason of a trial requeued because its worker retired under it."""
    worker = run.worker or "its worker"
    return f"{MIGRATED}{worker}: it retired before the trial left ({error})"


def migrations(store: Store, trial: int | None = None) -> dict[int, int]:
    """Count each trial's migrations (or ``trial``'s only) from the store's transitions."""
    counts: dict[int, int] = {}
    for t in store.transitions(trial):
        if t.target == TrialState.PENDING and t.reason.startswith(MIGRATED):
            counts[t.trial] = counts.get(t.trial, 0) + 1
    return counts


class Teller(Protocol):
    """What migration needs of the search driver."""

    def tell_trial(self, run: TrialRun, decision: Decision, *,
                   requeue: bool = False) -> None: ...


class Migrations:
    """Moves the trials of workers about to retire; one per search driver.

    Parameters
    ----------
    margin
        Seconds before a worker retires at which its trials leave; None reads
        ``kale.migration-margin``.
    """

    def __init__(self, margin: float | None = None) -> None:
        self.margin = margin_setting() if margin is None else margin
        self.looked = -math.inf
        self.drained: set[str] = set()
        self.broken = False  # the cluster could not say: logged once, then quiet

    def leaving(self) -> int:
        """How many workers are drained and not yet gone: they take no new trials."""
        return len(self.drained)

    def check(self, cluster: Cluster, running: list[TrialRun], driver: Teller) -> None:
        """Drain workers about to retire and ask their trials to leave (driver's lock held)."""
        now = time.monotonic()
        if self.margin <= 0 or now - self.looked < _EVERY:
            return
        self.looked = now
        try:
            times = cluster.retire_times()
        except Exception as e:  # a cluster being replaced or stopped: try again later
            if not self.broken:
                logger.warning("could not read when the cluster's workers retire: %s", e)
            self.broken = True
            return
        self.broken = False
        clock = time.time()
        leaving = {name: at - clock for name, (at, lifetime) in times.items()
                   if at - clock <= margin_for(lifetime, self.margin)}
        self.drained &= set(times)
        if set(leaving) - self.drained:
            try:
                cluster.drain(set(leaving) - self.drained)
                self.drained |= set(leaving)
            except Exception as e:  # new trials may land there; they will leave in turn
                logger.warning("could not drain workers %s: %s", sorted(leaving), e)
        for run in running:
            left = leaving.get(str(run.worker))
            if left is None or run.pending_action is not None or run.started is None \
                    or run.state is not TrialState.RUNNING:
                continue  # run.worker is the current attempt's only once it started
            logger.info("trial %d leaves %s, which retires in %.1f s", run.number,
                        run.worker, left)
            driver.tell_trial(run, Decision(Action.PAUSE, f"{MIGRATED}{run.worker}: "
                                            f"retires in {max(left, 0):.0f} s"), requeue=True)
