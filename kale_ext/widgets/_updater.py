"""The background loop that pushes store changes into widgets, throttled and batched."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Updater:
    """Calls ``tick()`` on a daemon thread at most once per ``interval`` seconds.

    Everything that arrived between two ticks is applied in one batch, so the cost per
    second is bounded whatever the report rate; the kernel's own thread is never used,
    so cells keep running while widgets update. ``poke()`` asks for a tick now (after a
    button click). ``cpu_seconds`` is the thread CPU time spent in ticks.

    ``busy`` caps the CPU the ticks take, as a share of one core: a tick that took ``d``
    seconds of CPU is followed by the next no sooner than ``d / busy`` after its start,
    so a short interval keeps a panel prompt while its ticks are cheap and backs off
    when they grow (a big search) instead of taking the kernel's CPU. CPU, not wall
    time: time spent waiting for the interpreter lock or a core is not the tick's cost.
    """

    def __init__(self, tick: Callable[[], bool], *, interval: float = 0.2,
                 idle_interval: float = 2.0, name: str = "kale-panel",
                 busy: float = 1.0) -> None:
        if not 0 < busy <= 1:
            raise ValueError(f"busy must be in (0, 1], but got busy={busy!r}: it is the "
                             f"largest share of wall time the updates may take.")
        self.tick, self.interval, self.idle_interval = tick, interval, idle_interval
        self.busy = busy
        self._rest = 0.0  # the least time from the last tick's start to the next, by its cost
        self.cpu_seconds = 0.0
        self.ticks = 0
        self.error: BaseException | None = None
        self.idle = False  # set by tick's return: False means nothing more will come
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> Updater:
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            wait = self.idle_interval if self.idle else max(self.interval, self._rest)
            self._wake.wait(max(0.0, last + wait - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            # Throttle pokes as well: never two ticks closer than ``interval``.
            gap = last + max(self.interval, self._rest) - time.monotonic()
            if gap > 0 and self._stop.wait(gap):
                return
            last = time.monotonic()
            start = time.thread_time()
            try:
                self.idle = not self.tick()
                self.error = None
            except Exception as e:  # keep the panel alive; the error shows in it
                logger.exception("panel update failed")
                self.error = e
            finally:
                took = time.thread_time() - start
                self.cpu_seconds += took
                self.ticks += 1
                self._rest = took / self.busy  # from this tick's start to the next one's
