"""When Dask workers retire (``--lifetime``), and draining the ones about to.

A worker given ``--lifetime`` arms a timer in ``Worker.__init__``
(``io_loop.call_later(lifetime, close_gracefully)``, the lifetime already staggered)
and keeps the staggered value as ``Worker.lifetime``. The timer's own deadline, read
from the worker's event loop, gives the retirement to within the loop's clock; where
it cannot be found, the worker process's start time (psutil) plus ``lifetime`` stands
in, early by the time the process took to import and construct its worker (about a
second or two), so on the safe side.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

_REASON = "worker-lifetime-reached"


def _retirement(dask_worker: Any) -> tuple[float, float] | None:
    """On a worker: ``(at, lifetime)`` of its lifetime timer; None without one."""
    lifetime = getattr(dask_worker, "lifetime", None)
    if not lifetime:
        return None
    loop: Any = getattr(getattr(dask_worker, "io_loop", None), "asyncio_loop", None)
    for handle in getattr(loop, "_scheduled", ()):
        args = getattr(handle, "_args", None) or ()
        call = args[0] if args else None
        if getattr(call, "keywords", {}).get("reason") == _REASON and \
                getattr(call, "func", None) == dask_worker.close_gracefully:
            return time.time() + handle.when() - loop.time(), float(lifetime)
    import psutil

    return psutil.Process().create_time() + float(lifetime), float(lifetime)


def _drain(addresses: list[str], dask_scheduler: Any) -> list[str]:
    """On the scheduler: mark workers closing gracefully, on the scheduler's side only.

    Such a worker gets no new tasks and finishes its running ones. The worker itself is
    not told (``Scheduler.retire_workers`` would tell it, and a worker already closing
    gracefully waits forever when its own lifetime asks it to close), so it still
    retires at its lifetime as usual.
    """
    from distributed.core import Status

    drained = []
    for address in addresses:
        ws = dask_scheduler.workers.get(address)
        if ws is not None and ws.status == Status.running:
            dask_scheduler.handle_worker_status_change(
                Status.closing_gracefully, ws, f"kale-drain-{time.time()}")
            drained.append(address)
    return drained


class DaskLifetimes:
    """The lifetime methods of :class:`kale_ext.clusters._dask.DaskCluster`."""

    _client: Any
    _retirements: dict[str, tuple[str, tuple[float, float] | None]]

    def _worker_names(self) -> dict[str, str]:
        info = self._client.scheduler_info(n_workers=-1)["workers"]
        return {addr: str(w.get("name", addr)) for addr, w in info.items()}

    def retire_times(self) -> dict[str, tuple[float, float]]:
        """Return ``(at, lifetime)`` by worker name; asks only workers not asked before."""
        cache = self.__dict__.setdefault("_retirements", {})
        names = self._worker_names()
        for addr in list(cache):
            if addr not in names:
                del cache[addr]
        new = [addr for addr in names if addr not in cache]
        if new:
            for addr, value in self._client.run(_retirement, workers=new,
                                                on_error="return").items():
                if not isinstance(value, BaseException):
                    cache[addr] = (names[addr], tuple(value) if value else None)
        return {name: value for name, value in cache.values() if value is not None}

    def drain(self, workers: Iterable[str]) -> None:
        """Mark the named workers closing gracefully in the scheduler (see ``_drain``)."""
        wanted = set(workers)
        addresses = [a for a, name in self._worker_names().items() if name in wanted]
        if addresses:
            self._client.run_on_scheduler(_drain, addresses)
