"""When an idle cluster stops itself: no client connected and no task for a while.

A notebook that never calls ``cluster.stop()``, or a kernel that died, would otherwise
leave its cluster (and on a queue, its batch jobs and allocation hours) running with
no end. The process that owns the cluster (the Dask daemon) asks :class:`IdleClock`
every few seconds what it saw and stops the cluster once the clock runs out.

The timeout is the ``idle-timeout`` option (a profile key or a ``start_cluster``
keyword; seconds or a duration such as ``"30 minutes"``), falling back to
``kale.idle-timeout``; ``pin=True`` (or ``idle-timeout: null`` / ``0``) turns it off.
:class:`IdleClock` is policy only, without I/O: the owner feeds it what it sees (through
:func:`watch`), tests feed it fake observations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kale_ext import config
from kale_ext._errors import ConfigError
from kale_ext.clusters import _start_checks

logger = logging.getLogger(__name__)

#: The options that set the idle timeout; every backend accepts them.
IDLE_KEYS = frozenset({"idle_timeout", "pin"})


def timeout_seconds(options: Mapping[str, Any]) -> float | None:
    """Return the idle timeout of a cluster started with ``options``, or None for never.

    Parameters
    ----------
    options
        The resolved start options: ``idle_timeout`` (seconds, or a duration string
        such as ``"1h"``; None: ``kale.idle-timeout``) and ``pin`` (True: never).
    """
    if options.get("pin"):
        return None
    value = options.get("idle_timeout")
    if value is None:
        value = config.get("idle-timeout")
    if value in (None, 0, "0", False):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"idle_timeout must be seconds or a duration such as '30 minutes' or "
                          f"'1h', but got idle_timeout={value!r}. Use null or 0 (or pin=True) "
                          "for no timeout.")
    seconds = _start_checks.seconds("idle_timeout", value, unbounded=True)
    return seconds or None


def check_interval(timeout: float | None) -> float:
    """Return the seconds between two looks at the cluster.

    That is a tenth of the timeout, 0.25 s to 30 s (5 s without a timeout: the status
    still says how long a cluster has been idle).
    """
    if timeout is None:
        return 5.0
    return min(30.0, max(0.25, timeout / 10))


@dataclass
class IdleClock:
    """Counts how long a cluster has had no client and no task.

    A client counts once it is seen in two looks in a row: the status queries of the
    sidebar and the command line connect for a moment and are not users of the cluster.
    Until a first client was seen, a client counts at first sight: the one that started
    the cluster connects after the cluster is up, and holds it from then on.

    Parameters
    ----------
    timeout
        Seconds of idleness after which the cluster should stop; None: never.
    """

    timeout: float | None
    idle_since: float | None = None
    _seen: frozenset[str] | None = None

    def observe(self, now: float, *, clients: Iterable[str], busy: bool) -> None:
        """Record one look at ``now``.

        ``clients`` are the ids of the connected clients; ``busy`` says whether any task
        is queued or running.
        """
        current = frozenset(clients)
        holding = current if self._seen is None else current & self._seen
        if current or self._seen is not None:
            self._seen = current
        if busy or holding:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now

    def idle_for(self, now: float) -> float | None:
        """Seconds the cluster has been idle at ``now``; None while in use."""
        return None if self.idle_since is None else max(0.0, now - self.idle_since)

    def left(self, now: float) -> float | None:
        """Seconds until the cluster stops; None while in use or without a timeout."""
        idle = self.idle_for(now)
        if idle is None or self.timeout is None:
            return None
        return max(0.0, self.timeout - idle)

    def expired(self, now: float) -> bool:
        """Whether the cluster has been idle for its whole timeout."""
        return self.left(now) == 0.0

    def to_dict(self, now: float) -> dict[str, float | None]:
        """Return the clock as a status shows it: ``timeout``, ``idle_for`` and ``left``."""
        return {"timeout": self.timeout, "idle_for": self.idle_for(now), "left": self.left(now)}


def scheduler_activity(scheduler: Any) -> tuple[list[str], bool]:
    """Return a Dask scheduler's client ids and whether it has work queued or running."""
    clients = [c for c in getattr(scheduler, "clients", {}) if c != "fire-and-forget"]
    busy = (bool(getattr(scheduler, "queued", ())) or bool(getattr(scheduler, "unrunnable", ()))
            or any(ws.processing for ws in scheduler.workers.values()))
    return clients, busy


async def watch(clock: IdleClock, look: Callable[[], tuple[Iterable[str], bool]],
                expire: Callable[[], None]) -> None:
    """Look at the cluster every few seconds with ``look()``, and expire it when idle.

    ``expire()`` is called once the cluster has been idle for the clock's whole timeout.
    A clock without a timeout keeps counting (status shows for how long a cluster is
    idle) and never expires.
    """
    while True:
        # The first look after an interval: the starting client has connected by then.
        await asyncio.sleep(check_interval(clock.timeout))
        now = time.time()
        try:
            clients, busy = look()
        except Exception as e:  # a scheduler in the middle of a change: look again
            logger.debug("idle check failed: %s", e)
        else:
            clock.observe(now, clients=clients, busy=busy)
            if clock.expired(now):
                logger.info("stopping: no client and no task for %.0f s (idle-timeout)",
                            clock.timeout)
                expire()
                return
