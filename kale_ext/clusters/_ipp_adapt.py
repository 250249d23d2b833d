"""Adaptive scaling for ipyparallel clusters, which have no adaptive scaler of their own.

:class:`AdaptivePolicy` only decides, from a snapshot of the task queue; it does no
I/O and is tested with plain numbers. :class:`Adaptor` is the thin thread that reads
the controller's queue status, asks the policy and scales the cluster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kale_ext._errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueSnapshot:
    """What the controller says about the load at one moment."""

    engines: int  # registered engines
    requested: int  # engines asked for (registered + still starting)
    unassigned: int  # tasks waiting for any engine
    busy: int  # engines running or holding a task
    idle_engines: tuple[int, ...] = ()  # ids of engines with nothing to do


@dataclass(frozen=True)
class Decision:
    target: int
    remove: tuple[int, ...] = ()  # idle engines to retire first when scaling down


class AdaptivePolicy:
    """Scale between ``minimum`` and ``maximum`` engines with the number of waiting tasks.

    Scale up at once to cover busy engines plus waiting tasks. Scale down to the
    busy engines only after ``wait_count`` consecutive snapshots said so, so that a
    short pause between tasks does not cancel and resubmit batch jobs.
    """

    def __init__(self, minimum: int, maximum: int, *, wait_count: int = 3) -> None:
        for name, value in (("minimum", minimum), ("maximum", maximum), ("wait_count", wait_count)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"{name} must be a non-negative integer, but got {name}={value!r}."
                )
        if minimum > maximum:
            raise ConfigError(
                f"adapt needs minimum <= maximum, but got minimum={minimum}, maximum={maximum}."
            )
        self.minimum = minimum
        self.maximum = maximum
        self.wait_count = max(1, wait_count)
        self._down_votes = 0

    def _clamp(self, n: int) -> int:
        return max(self.minimum, min(self.maximum, n))

    def decide(self, s: QueueSnapshot) -> Decision:
        """Decide the engine count to ask for now, and which idle engines to retire first."""
        wanted = self._clamp(s.busy + s.unassigned)
        if wanted > s.requested or s.requested < self.minimum:
            self._down_votes = 0
            return Decision(max(wanted, self._clamp(s.requested)))
        if s.requested > self.maximum:
            self._down_votes = 0
            return Decision(self.maximum, tuple(s.idle_engines[: s.requested - self.maximum]))
        if wanted < s.requested and s.unassigned == 0 and s.requested == s.engines:
            self._down_votes += 1
            if self._down_votes >= self.wait_count:
                self._down_votes = 0
                excess = s.requested - wanted
                return Decision(wanted, tuple(s.idle_engines[:excess]))
            return Decision(s.requested)
        self._down_votes = 0
        return Decision(s.requested)


class Adaptor:
    """A daemon thread that applies an :class:`AdaptivePolicy` every ``interval`` seconds."""

    def __init__(
        self,
        policy: AdaptivePolicy,
        snapshot: Callable[[], QueueSnapshot],
        scale: Callable[[Decision], None],
        *,
        interval: float = 1.0,
    ) -> None:
        self.policy = policy
        self._snapshot = snapshot
        self._scale = scale
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kale-ipp-adapt", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def step(self) -> Decision:
        """Take one snapshot, decide, and scale if the decision changes the request."""
        snap = self._snapshot()
        decision = self.policy.decide(snap)
        if decision.target != snap.requested:
            logger.info("adapting from %d to %d engines", snap.requested, decision.target)
            self._scale(decision)
        return decision

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception:  # keep adapting through a transient controller hiccup
                logger.exception("adaptive scaling step failed")
