"""Which running trials went silent: heartbeats judged against the driver's own lag.

Any message of a trial (a report, a checkpoint, a heartbeat of its stream or of its
worker's shared connection) is a sign of its life. A trial is lost when it was silent
for longer than the search's ``heartbeat_timeout`` plus the lag the driver itself had
lately, where silence is counted only up to the time before which the channel server
has handled everything it received (:meth:`ChannelServer.caught_up`): a driver that is
behind on its channel or late with its own passes never takes its own delay for a
trial's silence. A trial whose function returned (its ``end`` message was delivered, or
its task's future settled) is never lost for silence while its result travels back.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kale_ext._errors import SearchError, StoreError
from kale_ext.trial import TrialState

if TYPE_CHECKING:
    from kale_ext.channel import ChannelServer
    from kale_ext.search._runs import TrialRun
    from kale_ext.store import Store

logger = logging.getLogger(__name__)

_WRITE_EVERY = 5.0  # seconds between writes of the driver's lag to the store


class Liveness:
    """The driver's heartbeat watch and its measure of its own lag.

    Parameters
    ----------
    timeout
        The search's ``heartbeat_timeout``: seconds of silence after which a started trial
        is lost, on top of the driver's recent lag.
    tick
        Seconds the driver means to leave between its housekeeping passes.

    Attributes
    ----------
    loop_lag : float
        How much later than meant the latest pass came, in seconds.
    ingest_lag : float
        How far behind the channel server was at the latest pass, in seconds.
    max_lag : float
        The largest lag of either kind seen since the driver started.
    """

    def __init__(self, timeout: float, tick: float) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not 0 < timeout < float("inf"):
            raise SearchError(f"heartbeat_timeout must be a positive number of seconds, but got "
                              f"{timeout!r}; the default, 10, suits most searches.")
        self.timeout = float(timeout)
        self.tick = tick
        self.loop_lag = self.ingest_lag = self.max_lag = 0.0
        self._last_pass: float | None = None
        self._recent: deque[tuple[float, float]] = deque()  # (monotonic time, loop lag)
        self._written = float("-inf")

    def recent_lag(self) -> float:
        """Return the largest loop lag of the last ``timeout`` seconds and more."""
        return max((lag for _, lag in self._recent), default=0.0)

    def lost(self, runs: Iterable[TrialRun], server: ChannelServer) -> list[tuple[TrialRun, str]]:
        """Measure this pass's lag; return the running trials gone silent, with why."""
        mono, now = time.monotonic(), time.time()
        if self._last_pass is not None:
            self.loop_lag = max(0.0, mono - self._last_pass - self.tick)
        self._last_pass = mono
        # Keep a lag for as long as the silences it may have stretched are judged.
        window = self.timeout + self.recent_lag() + self.loop_lag
        self._recent.append((mono, self.loop_lag))
        while self._recent and self._recent[0][0] < mono - window:
            self._recent.popleft()
        caught_up = min(now, server.caught_up())
        self.ingest_lag = now - caught_up
        lag = self.recent_lag()
        self.max_lag = max(self.max_lag, lag, self.ingest_lag)
        limit = self.timeout + lag
        seen = server.last_seen()
        lost = []
        for run in runs:
            stream = (run.number, run.attempt, 0)
            server_seen = seen.get(stream)
            if server_seen is not None:
                run.last_seen = max(run.last_seen, server_seen)
            if run.state is not TrialState.RUNNING or run.started is None:
                continue
            if (run.future is not None and run.future.done()) \
                    or server.ended(stream) is not None:
                continue  # it returned: its result is on its way
            silence = caught_up - run.last_seen
            if silence > limit:
                lost.append((run, f"no heartbeat for {silence:.0f} s (limit {self.timeout:g} s"
                                  f" + {lag:.1f} s of driver lag) from "
                                  f"{run.worker or 'its worker'}"))
        return lost

    @staticmethod
    def ended(run: TrialRun, server: ChannelServer, ranks: int) -> dict[str, Any] | None:
        """Return the outcome a returned one-rank trial sent in its ``end`` message.

        The driver settles the trial by it without waiting for its task's result, which
        may come seconds later (a backend reads results one at a time). None before the
        end message, and for a distributed trial (its task combines the ranks' outcomes).
        """
        if ranks != 1 or run.future is None:
            return None
        return server.ended((run.number, run.attempt, 0))

    def figures(self) -> dict[str, float]:
        """Return the lag figures: ``loop``, ``ingest``, ``recent`` and ``max`` seconds."""
        return {"loop": round(self.loop_lag, 3), "ingest": round(self.ingest_lag, 3),
                "recent": round(self.recent_lag(), 3), "max": round(self.max_lag, 3)}

    def record(self, store: Store, *, force: bool = False) -> None:
        """Write :meth:`figures` to the store's search row every few seconds."""
        mono = time.monotonic()
        if force or mono - self._written >= _WRITE_EVERY:
            self._written = mono
            try:
                store.set_search_lag({**self.figures(), "time": round(time.time(), 3)})
            except StoreError as e:  # a figure for people: the search's own writes tell
                logger.debug("could not record the driver's lag: %s", e)

