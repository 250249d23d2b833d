"""A third cluster backend, written only against the public ``Cluster`` API.

Each worker is a one-thread pool in this process. Tasks travel as cloudpickle bytes,
as they would to a remote worker, so a task never shares objects with its caller.
It proves that search and distributed training need nothing of a backend beyond
``kale_ext.clusters``' public surface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import cloudpickle

from kale_ext import ClusterError
from kale_ext.clusters import Cluster, ClusterRecord, ClusterStatus, Slot, WorkerInfo


def _run(payload: bytes) -> Any:
    fn, args = cloudpickle.loads(payload)
    return fn(*args)


class ThreadCluster(Cluster):
    """``workers`` one-thread workers named ``thread-0``, ``thread-1``, ..."""

    backend = "threads"

    def __init__(self, workers: int = 2) -> None:
        super().__init__(ClusterRecord(ClusterRecord.new_id(), self.backend, "local", "threads"))
        self._pools = {f"thread-{i}": ThreadPoolExecutor(1, f"kale-thread-{i}")
                       for i in range(workers)}
        self._queued = dict.fromkeys(self._pools, 0)
        self._lock = threading.Lock()
        self.retries_disabled = False

    @classmethod
    def start(cls, kind: str, options: dict[str, Any]) -> ThreadCluster:
        return cls(int(options.get("workers") or 2))

    @classmethod
    def connect(cls, record: ClusterRecord) -> ThreadCluster:
        raise ClusterError(f"A thread cluster lives in one process; {record.id} cannot be "
                           "reached from another.")

    @property
    def client(self) -> Any:
        return self._pools

    def scale(self, n: int) -> None:
        raise ClusterError("A thread cluster has a fixed size.")

    def adapt(self, minimum: int, maximum: int) -> None:
        self.scale(maximum)

    def stop(self) -> None:
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    def status(self) -> ClusterStatus:
        return ClusterStatus(self.id, self.backend, self.kind, "running", "threads", None,
                             [WorkerInfo(name, name, "localhost", 1, 0) for name in self._pools])

    def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
        if n > len(self._pools):
            raise ClusterError(f"A thread cluster has {len(self._pools)} workers, not {n}.")

    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        return {s.name: self.submit_to(s, fn, *args).result() for s in self.slots()}

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            name = min(self._queued, key=self._queued.__getitem__)
        return self.submit_to(Slot(name, name), lambda: fn(*args, **kwargs))

    def slots(self) -> list[Slot]:
        with self._lock:
            return [Slot(name, name, n > 0) for name, n in self._queued.items()]

    def submit_to(self, slot: Slot, fn: Callable[..., Any], *args: Any,
                  key: str | None = None) -> Future[Any]:
        with self._lock:
            self._queued[str(slot.key)] += 1
        future = self._pools[str(slot.key)].submit(_run, cloudpickle.dumps((fn, args)))
        future.add_done_callback(lambda _: self._settled(str(slot.key)))
        return future

    def _settled(self, name: str) -> None:
        with self._lock:
            self._queued[name] -= 1

    def disable_task_retries(self) -> None:
        self.retries_disabled = True  # a thread pool never retries; note the call
