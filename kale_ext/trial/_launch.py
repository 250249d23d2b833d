"""Where a search trial's launch went: scheduling, imports on its worker, first report.

The worker marks when the trial's task began (or, for a rank of a distributed trial,
when its process was created), when its function was loaded, and whether it is the
first trial of its process (a distributed trial's rank: whether it is a new
interpreter, not a fork of a warm one). The driver adds when it submitted the trial and
when the start and the first report arrived, and keeps per trial (its latest attempt):

``scheduling``
    Seconds from the submission to the task starting on a worker (waiting for a free
    worker, the scheduler, and for a distributed trial placing its ranks).
``imports``
    Seconds from there to the trial's start message: the process start and imports of
    a rank, unpickling the function (importing what it refers to), the metric channel.
``first_report``
    Seconds from the start message to the first report of rank 0: the function's own
    imports and set-up, and its first batch.
``first_on_worker``
    Whether the trial was the first in its worker process (it paid the imports that
    later trials there find done).

Marks come from the workers' clocks; a phase that skew would make negative is 0.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kale_ext.channel import Message
    from kale_ext.store import Store
    from kale_ext.trial._context import TrialContext

#: The launch figures a trial keeps, in order (seconds, then a flag).
LAUNCH_FIELDS = ("scheduling", "imports", "first_report", "first_on_worker")

_started_here = 0  # trials whose start this process sent
_lock = threading.Lock()


def worker_marks(context: TrialContext, began: float, loaded: float) -> dict[str, Any]:
    """Return the marks of a trial's start message (see the module's docstring).

    A launcher that started a process for the trial puts its own marks (``created``,
    ``first``) in ``context.extra["launch"]``.
    """
    global _started_here
    with _lock:
        first = _started_here == 0
        _started_here += 1
    marks: dict[str, Any] = {"began": began, "loaded": loaded, "first": first}
    extra = context.extra.get("launch")
    if isinstance(extra, dict):
        marks.update(extra)
    return marks


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class LaunchTimes:
    """The driver's side: turns start messages and first reports into stored figures."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Per trial, the attempt awaiting its first report and when it started.
        self._started: dict[int, tuple[int, float]] = {}

    def on_start(self, message: Message, submitted: float) -> None:
        """Store ``scheduling``, ``imports`` and ``first_on_worker`` of a started attempt."""
        data = message.data.get("launch")
        marks = data if isinstance(data, dict) else {}
        started = float(message.time)
        began = _seconds(marks.get("created")) or _seconds(marks.get("began")) or started
        figures: dict[str, Any] = {"imports": round(max(0.0, started - began), 4)}
        if submitted > 0:
            figures["scheduling"] = round(max(0.0, began - submitted), 4)
        if isinstance(marks.get("first"), bool):
            figures["first_on_worker"] = marks["first"]
        self._started[message.trial] = (message.attempt, started)
        self.store.set_launch(message.trial, {k: figures[k] for k in LAUNCH_FIELDS
                                              if k in figures}, merge=False)

    def on_report(self, message: Message) -> None:
        """Store ``first_report`` at the first report of rank 0 of a started attempt."""
        if message.rank != 0:
            return
        attempt, started = self._started.get(message.trial, (None, 0.0))
        if attempt == message.attempt:
            del self._started[message.trial]
            self.store.set_launch(message.trial, {
                "first_report": round(max(0.0, float(message.time) - started), 4)}, merge=True)


def launch_summary(launch: dict[str, Any]) -> str:
    """Return a trial's launch as a short cell: ``2.9 s (imports 2.3, first)``."""
    phases = {k: v for k, v in launch.items() if k != "first_on_worker"
              and isinstance(v, int | float) and not isinstance(v, bool)}
    if not phases:
        return ""
    name, most = max(phases.items(), key=lambda kv: kv[1])
    first = ", first" if launch.get("first_on_worker") else ""
    return f"{sum(phases.values()):.1f} s ({name.replace('_', ' ')} {most:.1f}{first})"
