"""Scaling an ipyparallel cluster by engine sets, by hand or with its task queue.

An engine set is one batch job (or one group of local processes) with its engines.
Growing adds sets; shrinking shuts engines down (the idle ones first) and stops sets
whose engines are all gone, or replaces a set by a smaller one. The sizes live in the
registry record (``options["engine_sets"]``) so that every process sees them.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import psutil

from kale_ext._errors import BatchJobError, ConfigError
from kale_ext.clusters._base import Cluster
from kale_ext.clusters._ipp_adapt import AdaptivePolicy, Adaptor, Decision, QueueSnapshot
from kale_ext.clusters._ipp_launchers import launcher_traits
from kale_ext.clusters._ipp_loop import IppLoop

logger = logging.getLogger(__name__)


class EngineSetScaling(Cluster):
    """``scale`` and ``adapt`` over engine sets, for :class:`IPyParallelCluster`."""

    _ipp: Any  # the ipyparallel.Cluster
    _loop: IppLoop
    _lock: threading.RLock
    _info: dict[int, dict[str, Any]]  # what each engine said about itself
    _adaptor: Adaptor | None

    @abstractmethod
    def _refresh(self) -> None:
        """Pick up scaling done by another process."""

    @abstractmethod
    def _save(self) -> None:
        """Write the cluster file and the registry record."""

    @abstractmethod
    def _engine_info(self, timeout: float = 2.0) -> dict[int, dict[str, Any]]:
        """Return what each engine said about itself (its engine set among it)."""

    @property
    def _sets(self) -> dict[str, int]:
        sets: dict[str, int] = self.record.options.setdefault("engine_sets", {})
        return sets

    def _add_engines(self, n: int) -> None:
        per_job = self.record.options.get("engines_per_job") or n
        while n > 0:
            size = min(per_job, n)
            set_id = f"{int(time.time() * 1000)}-{len(self._ipp.engines)}"
            kwargs: dict[str, Any] = {
                "environment": {"KALE_ENGINE_SET": set_id, "KALE_CLUSTER_ID": self.id},
            }
            if self.kind != "local":
                kwargs.update(launcher_traits(self.kind, self.record.options))
                kwargs["batch_file_name"] = str(
                    Path(self.record.security or ".") / f"{self.kind}-engines-{set_id}.sh"
                )
            try:
                self._loop.run(self._ipp.start_engines(size, engine_set_id=set_id, **kwargs))
            except BaseException:
                self._ipp.engines.pop(set_id, None)
                raise
            self._sets[set_id] = size
            self._save()
            n -= size

    def scale(self, n: int) -> None:
        """Ask for ``n`` engines: add engine sets, or stop sets and shut engines down."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"scale needs a non-negative integer, but got n={n!r}.")
        self._stop_adapting()  # an explicit size ends adaptive scaling
        self._scale(Decision(n))

    def _scale(self, decision: Decision) -> None:
        with self._lock:
            self._refresh()
            requested = sum(self._sets.values())
            if decision.target > requested:
                self._add_engines(decision.target - requested)
            elif decision.target < requested:
                self._remove(requested - decision.target, prefer=decision.remove)

    def _members(self) -> dict[str, list[int]]:
        members: dict[str, list[int]] = {s: [] for s in self._sets}
        for eid, info in self._engine_info(timeout=3).items():
            members.setdefault(info["engine_set"], []).append(eid)
        return members

    def _remove(self, k: int, prefer: tuple[int, ...] = ()) -> None:
        members = self._members()
        preferred = set(prefer)
        # Sets whose engines are all idle go first, then the newest.
        order = sorted(
            self._sets,
            key=lambda s: (bool(members[s]) and set(members[s]) <= preferred, s),
            reverse=True,
        )
        for set_id in order:
            if k <= 0:
                break
            size = self._sets[set_id]
            ids = members.get(set_id, [])
            if size <= k:
                self._shutdown_engines(ids)
                self._stop_set(set_id)
                k -= size
            elif len(ids) >= k:
                victims = sorted(ids, key=lambda e: (e not in preferred, -e))[:k]
                self._shutdown_engines(victims)
                self._sets[set_id] = size - k
                k = 0
            else:  # its engines are not all known yet: replace the set by a smaller one
                self._shutdown_engines(ids)
                self._stop_set(set_id)
                self._add_engines(size - k)
                k = 0
            self._save()

    def _shutdown_engines(self, ids: list[int], timeout: float = 10) -> None:
        """Ask engines to exit cleanly and wait until the controller has let them go."""
        if not ids:
            return
        client = self.client
        client.shutdown(targets=ids, block=False)
        deadline = time.monotonic() + timeout
        while set(ids) & set(client.ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for eid in ids:
            self._info.pop(eid, None)

    def _stop_set(self, set_id: str) -> None:
        es = self._ipp.engines.get(set_id)
        procs = [la.process for la in getattr(es, "launchers", {}).values() if la.process]
        if procs:  # local engines asked to shut down: let them exit before any SIGTERM
            psutil.wait_procs(procs, timeout=3)
        if set_id in self._ipp.engines:
            try:
                self._loop.run(self._ipp.stop_engines(set_id), timeout=120)
            except BatchJobError as e:  # the job had already ended
                logger.info("engine set %s: %s", set_id, e)
                self._ipp.engines.pop(set_id, None)
        self._sets.pop(set_id, None)

    def adapt(self, minimum: int, maximum: int, *, interval: float = 1.0,
              wait_count: int = 3) -> None:
        """Scale between ``minimum`` and ``maximum`` engines with the task queue.

        A background thread reads the controller's queue every ``interval`` seconds;
        it adds engines as soon as tasks wait and retires idle ones after
        ``wait_count`` quiet polls. ``scale()`` or ``stop()`` end adapting.
        """
        policy = AdaptivePolicy(minimum, maximum, wait_count=wait_count)
        self._stop_adapting()
        self._adaptor = Adaptor(policy, self._snapshot, self._scale, interval=interval)
        self._adaptor.start()

    def _stop_adapting(self) -> None:
        if self._adaptor is not None:
            self._adaptor.stop()
            self._adaptor = None

    def _snapshot(self) -> QueueSnapshot:
        with self._lock:
            ids = set(self.client.ids)
            queues = dict(self.client.queue_status())
            unassigned = int(queues.pop("unassigned", 0))
            # The controller keeps queues of engines that have left; count live ones only.
            queues = {e: q for e, q in queues.items() if e in ids}
            idle = tuple(sorted(e for e, q in queues.items() if not q["queue"] and not q["tasks"]))
            return QueueSnapshot(engines=len(queues), requested=sum(self._sets.values()),
                                 unassigned=unassigned, busy=len(queues) - len(idle),
                                 idle_engines=idle)
