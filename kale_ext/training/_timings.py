"""Where a distributed launch spent its time, from the kernel's and the ranks' clocks.

A launch passes these marks, in order: the run is created (its store and metric
channel), the ranks are placed (workers held and probed) and submitted, each rank's
process exists, its imports are done, its process group is joined, and it sends its
first report (or returns, when it never reports). The phases between the marks are
those of the rank that reached its first report last: the one the run waited for.
"""

from __future__ import annotations

import time
from typing import Any

#: The phases of ``TrainingRun.timings``, in order.
PHASES = ("setup", "placement", "process_start", "imports", "rendezvous", "first_batch")

# The marks a rank's process records (wall-clock seconds), in order.
RANK_MARKS = ("created", "imported", "rendezvous", "first_report")


def process_created() -> float:
    """Return when this process was created (its fork), on the wall clock.

    Falls back to now where the process table cannot say.
    """
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # no psutil, or no /proc: the imports then count as process start
        return time.time()


def rank_end(marks: dict[str, float]) -> float | None:
    """Return the end of a rank's launch: its first report, else its return."""
    end = marks.get("first_report") or marks.get("returned")
    return float(end) if end else None


def phases(created: float, launched: float, submitted: float,
           ranks: list[dict[str, float]]) -> dict[str, float]:
    """Return the seconds of each of :data:`PHASES`.

    ``created``, ``launched`` and ``submitted`` are the kernel's marks; ``ranks`` the
    marks each rank recorded. Only the kernel's phases are given while no rank has
    recorded its end. Marks are made monotonic (clocks of other hosts may lag the
    kernel's), so each phase is >= 0 and together they span creation to the first report.
    """
    out = {"setup": max(0.0, launched - created), "placement": max(0.0, submitted - launched)}
    ended = [m for m in ranks if rank_end(m) is not None]
    if not ended:
        return out
    last = max(ended, key=lambda m: rank_end(m) or 0.0)
    points = [submitted]
    for mark in RANK_MARKS[:-1]:
        points.append(float(last.get(mark) or points[-1]))
    points.append(rank_end(last) or points[-1])
    for i in range(1, len(points)):
        points[i] = max(points[i], points[i - 1])
    for name, start, end in zip(PHASES[2:], points[:-1], points[1:], strict=True):
        out[name] = end - start
    return out


def summary(timings: dict[str, Any]) -> str:
    """Return the timings as one line: ``placement 0.12 s, imports 1.90 s, ...``."""
    return ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in timings.items())
