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
    """

    def __init__(self, tick: Callable[[], bool], *, interval: float = 0.2,
                 idle_interval: float = 2.0, name: str = "kale-panel") -> None:
        self.tick, self.interval, self.idle_interval = tick, interval, idle_interval
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
            wait = self.idle_interval if self.idle else self.interval
            self._wake.wait(max(0.0, last + wait - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            # Throttle pokes as well: never two ticks closer than ``interval``.
            gap = last + self.interval - time.monotonic()
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
                self.cpu_seconds += time.thread_time() - start
                self.ticks += 1
