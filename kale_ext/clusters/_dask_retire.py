"""Workers that retire before their walltime, in the daemon that owns a Dask cluster.

A batch worker runs with ``--lifetime`` a little under its job's walltime, so that it
leaves cleanly rather than being killed. Dask then quietly re-runs whatever the worker
was running elsewhere, under the same task (or, when no other worker is left to take
its results, takes it for a lost worker and fails its tasks). kale retries trials
itself, as new attempts with their reports kept apart, and turns Dask's retries off
(``allowed_failures = 0``); a quiet re-run would run one attempt twice. So, while
retries are off, the tasks of a retiring worker fail at once with
:class:`~kale_ext.clusters.WorkerRetired`, which tells the caller that nothing went
wrong with the task itself.

Whatever the retries, the cluster keeps its size: once every process of a retired
worker's job has left, its place in the cluster's plan goes to a new worker, for
which a new job is submitted (the old job, ending anyway, is cancelled).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from kale_ext.clusters._base import WorkerRetired

logger = logging.getLogger("kale_ext.clusters.dask_daemon")

# The stimulus with which a worker asks to be retired: Worker.close_gracefully, which
# its --lifetime calls.
SELF_RETIRED = "worker-close-gracefully"


def _spec_name(worker_name: str, spec: dict[str, Any]) -> str | None:
    """Return the plan entry a worker belongs to; None when it belongs to none.

    A worker is named ``<spec>``, or ``<spec>-<i>`` for a job of several processes.
    """
    name = str(worker_name)
    if name in spec:
        return name
    return next((s for s in spec if name.startswith(f"{s}-")), None)


class Retirements:
    """Fails the tasks of retiring workers (while retries are off) and replaces them."""

    def __init__(self, cluster: Any, scheduler: Any) -> None:
        self.cluster = cluster
        self.scheduler = scheduler
        self.retired: set[str] = set()  # plan entries whose workers retired
        self.leaving: set[str] = set()  # addresses of workers retiring at their lifetime
        self.replaced = 0

    def install(self) -> None:
        """Wrap the scheduler's ``retire_workers`` and ``remove_worker``.

        A worker at its lifetime asks the scheduler to retire it (stimulus
        ``worker-close-gracefully-...``) and closes. Its removal comes with
        ``expected=True`` when the scheduler could move its results elsewhere, and as an
        ordinary lost connection when it could not (no other worker): both count.
        """
        scheduler = self.scheduler
        original_retire = scheduler.retire_workers
        original_remove = scheduler.remove_worker

        @functools.wraps(original_retire)
        async def retire_workers(*args: Any, **kwargs: Any) -> Any:
            if str(kwargs.get("stimulus_id") or "").startswith(SELF_RETIRED):
                self.leaving.update(scheduler.coerce_address(a)
                                    for a in kwargs.get("workers") or ())
            return await original_retire(*args, **kwargs)

        @functools.wraps(original_remove)
        async def remove_worker(address: str, *args: Any, **kwargs: Any) -> Any:
            try:
                address = scheduler.coerce_address(address)
                own = address in self.leaving
                self.leaving.discard(address)
                if own or kwargs.get("expected"):
                    self._retiring(address, kwargs.get("stimulus_id") or "retire", own)
            except Exception:  # never stand in the way of the removal itself
                logger.exception("handling the retirement of %s failed", address)
            return await original_remove(address, *args, **kwargs)

        scheduler.retire_workers = retire_workers
        scheduler.handlers["retire_workers"] = retire_workers  # how workers call it
        scheduler.remove_worker = remove_worker
        scheduler.handlers["unregister"] = remove_worker  # a closing worker's own call

    def _retiring(self, address: str, stimulus_id: str, own: bool) -> None:
        """Note a retiring worker's place for a new job, and fail its running tasks.

        ``own`` says the worker retires at its lifetime (not in a scale-down); tasks fail
        only while task retries are off.
        """
        scheduler = self.scheduler
        ws = scheduler.workers.get(address)
        if ws is None:
            return
        entry = _spec_name(ws.name, getattr(self.cluster, "worker_spec", None) or {})
        if entry is not None and own:
            self.retired.add(entry)
        if scheduler.allowed_failures != 0 or not ws.processing:
            return
        from distributed.protocol.pickle import dumps

        logger.info("worker %s retires with %d running task(s); they fail as retired",
                    ws.name, len(ws.processing))
        for ts in list(ws.processing):
            error = WorkerRetired(
                f"Worker {ws.name} ({ws.address}) retired before its batch job's walltime "
                f"(its --lifetime) while running task {ts.key!r}; the task was not re-run."
            )
            recommendations = scheduler.transition(
                ts.key, "erred", exception=dumps(error), cause=ts.key,
                stimulus_id=stimulus_id, worker=ws.address)
            scheduler.transitions(recommendations, stimulus_id=stimulus_id)

    async def replace(self) -> None:
        """Give each retired worker's plan entry to a new worker once its processes left."""
        cluster = self.cluster
        spec = getattr(cluster, "worker_spec", None)
        if not self.retired or spec is None:
            return
        connected = [ws.name for ws in self.scheduler.workers.values()]
        changed = False
        for entry in sorted(self.retired):
            if entry not in spec:  # scaled away meanwhile
                self.retired.discard(entry)
                continue
            if any(_spec_name(name, {entry: None}) for name in connected):
                continue  # a process of its job still works
            self.retired.discard(entry)
            del spec[entry]
            spec.update(cluster.new_worker_spec())
            self.replaced += 1
            changed = True
            logger.info("replacing retired worker %s with a new job", entry)
        if changed:
            await cluster._correct_state()
