"""Workers that retire before their walltime, in the daemon that owns a Dask cluster.

A batch worker runs with ``--lifetime`` a little under its job's walltime, so that it
leaves cleanly rather than being killed. Dask then quietly re-runs whatever the worker
was running elsewhere, under the same task. kale retries trials itself, as new
attempts with their reports kept apart, and turns Dask's retries off
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

# The stimulus of a worker that closes by itself: Worker.close_gracefully, which its
# --lifetime calls.
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
        self.replaced = 0

    def install(self) -> None:
        """Wrap the scheduler's ``remove_worker``, which retirement calls with ``expected=True``."""
        scheduler = self.scheduler
        original = scheduler.remove_worker

        @functools.wraps(original)
        async def remove_worker(address: str, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("expected"):
                try:
                    self._retiring(scheduler, address, kwargs.get("stimulus_id", "retire"))
                except Exception:  # never stand in the way of the removal itself
                    logger.exception("handling the retirement of %s failed", address)
            return await original(address, *args, **kwargs)

        scheduler.remove_worker = remove_worker

    def _retiring(self, scheduler: Any, address: str, stimulus_id: str) -> None:
        ws = scheduler.workers.get(scheduler.coerce_address(address))
        if ws is None:
            return
        spec = getattr(self.cluster, "worker_spec", None) or {}
        entry = _spec_name(ws.name, spec)
        # The worker's own decision (its lifetime), not a scale-down: that one retires
        # workers under the stimulus "retire-workers-..." and drops them from the plan.
        if entry is not None and stimulus_id.startswith(SELF_RETIRED):
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
