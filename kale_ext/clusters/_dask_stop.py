"""Ending a Dask task that does not stop: its worker process is killed, its nanny restarts it."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from kale_ext._errors import ClusterError

_GONE_TIMEOUT = 60.0  # seconds for the scheduler to let a killed worker go


def _kill_worker_process(dask_worker: Any) -> int:
    """Run in a worker's nanny: SIGKILL the worker process; return its pid."""
    import os
    import signal

    pid = int(dask_worker.process.process.pid)
    os.kill(pid, signal.SIGKILL)
    return pid


def restart_worker_of(client: Any, cluster_id: str, future: Future[Any],
                      worker: str | None) -> str:
    """Kill the worker process that runs ``future``'s task; its nanny starts a new one.

    The worker is the one the scheduler has the task processing on, else the one named
    ``worker`` (a cancelled task is no longer the scheduler's, but may still run). The
    nanny, a process of its own, sends the worker process SIGKILL, which nothing in it
    can delay (a thread stuck in C code holds the interpreter, so a polite close would
    never come), and restarts it under the same name. With Dask's retries off
    (``Cluster.disable_task_retries``) the task fails with ``KilledWorker``, as does
    any other task of that process. Returns what was done, for the log.

    Raises
    ------
    ClusterError
        When no worker runs the task, it has no nanny, or the scheduler keeps it.
    """
    key = getattr(getattr(future, "native", None), "key", None)
    info = client.scheduler_info(n_workers=-1)["workers"]
    address = None
    if key is not None:
        address = next((a for a, keys in client.processing().items() if key in keys), None)
    if address is None and worker is not None:
        address = next((a for a, w in info.items() if str(w.get("name")) == worker), None)
    if address is None:
        raise ClusterError(f"Cluster {cluster_id}: no worker runs task {key} (worker "
                           f"{worker!r}); it has ended, or its worker is gone.")
    if not info.get(address, {}).get("nanny"):
        raise ClusterError(f"Cluster {cluster_id}: worker {address} runs without a nanny, "
                           "so nothing can end its process from outside; start the cluster "
                           "with nannies (Dask's default) to hard-stop its tasks.")
    pid = client.run(_kill_worker_process, workers=[address], nanny=True)[address]
    deadline = time.monotonic() + _GONE_TIMEOUT
    while address in client.scheduler_info(n_workers=-1)["workers"]:
        if time.monotonic() > deadline:
            raise ClusterError(f"Cluster {cluster_id}: worker {address} (pid {pid}) was sent "
                               f"SIGKILL and is still known to the scheduler after "
                               f"{_GONE_TIMEOUT:.0f} s.")
        time.sleep(0.1)
    return (f"killed Dask worker {worker or address} ({address}, pid {pid}); its nanny "
            "starts a new one")
