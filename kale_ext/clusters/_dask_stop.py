"""Ending a Dask task that does not stop: its worker process is restarted by its nanny."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from kale_ext._errors import ClusterError


def restart_worker_of(client: Any, cluster_id: str, future: Future[Any],
                      worker: str | None) -> str:
    """Restart, through its nanny, the worker process that runs ``future``'s task.

    The worker is the one the scheduler has the task processing on, else the one named
    ``worker`` (a cancelled task is no longer the scheduler's, but may still run). The
    nanny ends the process (SIGKILL when it does not close in time: a thread stuck in C
    code never lets it) and starts a new one under the same name. With Dask's retries
    off (``Cluster.disable_task_retries``) the task fails with ``KilledWorker``, as does
    any other task of that process. Returns what was done, for the log.

    Raises
    ------
    ClusterError
        When no worker runs the task, or the restart failed.
    """
    key = getattr(getattr(future, "native", None), "key", None)
    address = None
    if key is not None:
        address = next((a for a, keys in client.processing().items() if key in keys), None)
    if address is None and worker is not None:
        info = client.scheduler_info(n_workers=-1)["workers"]
        address = next((a for a, w in info.items() if str(w.get("name")) == worker), None)
    if address is None:
        raise ClusterError(f"Cluster {cluster_id}: no worker runs task {key} (worker "
                           f"{worker!r}); it has ended, or its worker is gone.")
    outcome = client.restart_workers([address], timeout=60, raise_for_error=False)
    state = str(outcome.get(address, "unknown"))
    if state == "OK":
        return f"restarted Dask worker {worker or address} ({address}) through its nanny"
    if state == "removed":  # no nanny: closed; only its batch job's plan brings it back
        return f"closed Dask worker {address}, which has no nanny to restart it"
    raise ClusterError(f"Cluster {cluster_id}: the restart of worker {address} to end task "
                       f"{key} failed: {state}.")
