"""Placement of ranks: hold distinct idle workers, and give them back.

``Cluster.submit`` load-balances; a distributed run needs each rank on a worker of its
own, so ranks go through the cluster's placement API: :meth:`Cluster.slots` lists the
workers and :meth:`Cluster.submit_to` runs a task on exactly one of them. Workers that
run a task, or that a live kale launch in this process holds, are taken last.
"""

from __future__ import annotations

import threading
import time

from kale_ext._errors import ClusterError, ConfigError
from kale_ext.clusters import Cluster, Slot

__all__ = ["release", "reserve"]

# Workers held by launches of this process, by cluster id: two distributed trials of a
# search are placed before the scheduler has seen either's tasks.
_held: dict[str, set[str | int]] = {}
_held_lock = threading.Lock()


def reserve(cluster: Cluster, n: int, *, wait: float = 10.0) -> list[Slot]:
    """Hold ``n`` distinct idle workers of ``cluster``; give them back with :func:`release`.

    Waits up to ``wait`` seconds for enough idle workers, then raises naming how many the
    cluster has and how many are busy.
    """
    if n < 1:
        raise ConfigError(f"A distributed run needs workers >= 1, but got workers={n}.")
    deadline = time.monotonic() + wait
    while True:
        slots = cluster.slots()
        with _held_lock:
            held = _held.setdefault(cluster.id, set())
            free = [s for s in slots if not s.busy and s.key not in held]
            if len(free) >= n:
                chosen = free[:n]
                held.update(s.key for s in chosen)
                return chosen
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if len(slots) < n:
        raise ClusterError(
            f"A distributed run with workers={n} needs {n} workers, one per rank, but cluster "
            f"{cluster.id} has {len(slots)}. Scale it first: cluster.scale({n}), then "
            f"cluster.wait_for_workers({n})."
        )
    raise ClusterError(
        f"A distributed run with workers={n} needs {n} idle workers, but only {len(free)} of "
        f"the {len(slots)} workers of cluster {cluster.id} were idle for {wait:g} s (the others "
        "run tasks or other distributed runs). Wait for them, or scale the cluster up."
    )


def release(cluster: Cluster, slots: list[Slot]) -> None:
    """Give workers held by :func:`reserve` back."""
    with _held_lock:
        held = _held.get(cluster.id, set())
        held.difference_update(s.key for s in slots)
