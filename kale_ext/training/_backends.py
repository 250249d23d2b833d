"""Per-backend placement: pick distinct workers and run a function on one chosen worker.

``Cluster.submit`` load-balances; a distributed run needs each rank on a worker of its
own, so ranks go through the backend's native client: a Dask task restricted to one
worker address (``allow_other_workers=False``), or an ipyparallel ``DirectView`` of one
engine. Workers that run a task, or that a live kale launch in this process holds, are
taken last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from kale_ext._errors import ClusterError, ConfigError


@dataclass(frozen=True)
class Slot:
    """One worker that runs one rank: a Dask worker address or an ipyparallel engine id."""

    key: str | int
    name: str


# Workers held by launches of this process, by cluster id: two distributed trials of a
# search are placed before the scheduler has seen either's tasks.
_held: dict[str, set[str | int]] = {}
_held_lock = threading.Lock()


def _candidates(cluster: Any) -> tuple[list[Slot], set[str | int]]:
    """All workers and the busy ones, per backend."""
    if cluster.backend == "dask":
        client = cluster.client
        info = client.scheduler_info(n_workers=-1)["workers"]
        slots = [Slot(addr, str(w.get("name", addr))) for addr, w in sorted(info.items())]
        busy = {addr for addr, keys in client.processing().items() if keys}
        return slots, busy
    if cluster.backend == "ipyparallel":
        client = cluster.client
        ids = sorted(client.ids)
        status = client.queue_status()
        busy = {e for e in ids
                if status.get(e, {}).get("queue", 0) or status.get(e, {}).get("tasks", 0)}
        return [Slot(e, f"engine-{e}") for e in ids], busy
    raise ConfigError(f"Distributed training supports the dask and ipyparallel backends, but "
                      f"cluster {cluster.id} has backend {cluster.backend!r}.")


def reserve(cluster: Any, n: int, *, wait: float = 10.0) -> list[Slot]:
    """Hold ``n`` distinct idle workers of ``cluster``; give them back with :func:`release`.

    Waits up to ``wait`` seconds for enough idle workers, then raises naming how many the
    cluster has and how many are busy.
    """
    if n < 1:
        raise ConfigError(f"A distributed run needs workers >= 1, but got workers={n}.")
    deadline = time.monotonic() + wait
    while True:
        slots, busy = _candidates(cluster)
        with _held_lock:
            held = _held.setdefault(cluster.id, set())
            free = [s for s in slots if s.key not in busy and s.key not in held]
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


def release(cluster: Any, slots: list[Slot]) -> None:
    """Give workers held by :func:`reserve` back."""
    with _held_lock:
        held = _held.get(cluster.id, set())
        held.difference_update(s.key for s in slots)


def submit_to(cluster: Any, slot: Slot, fn: Callable[..., Any], *args: Any,
              key: str | None = None) -> Future[Any]:
    """Run ``fn(*args)`` on exactly the worker ``slot``; a ``concurrent.futures.Future``."""
    if cluster.backend == "dask":
        from kale_ext.clusters._dask import DaskFuture

        kwargs: dict[str, Any] = {"key": key} if key else {}
        return DaskFuture(cluster.client.submit(fn, *args, workers=[slot.key],
                                                allow_other_workers=False, pure=False,
                                                **kwargs))
    if cluster.backend == "ipyparallel":
        from kale_ext.clusters._ipp_engine import EngineFuture, pack, run_task

        return EngineFuture(cluster.client[slot.key].apply_async(run_task,
                                                                 pack(fn, args, {})))
    raise ConfigError(f"Distributed training supports the dask and ipyparallel backends, but "
                      f"cluster {cluster.id} has backend {cluster.backend!r}.")
