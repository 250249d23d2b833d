"""What the cluster start benchmarks share: raw dask-jobqueue, kale's start, an empty queue.

Both time the start to two ready workers on the local Slurm (deploy/slurm-dev).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import kale_ext as kale


def raw_dask_jobqueue_seconds(timeout: float = 300) -> float:
    """Seconds from a raw ``SLURMCluster`` (TLS, in this process) to 2 ready workers."""
    from dask_jobqueue import SLURMCluster
    from distributed import Client
    from distributed.security import Security

    start = time.perf_counter()
    cluster = SLURMCluster(
        cores=1, processes=1, memory="1GiB", queue="debug", walltime="00:10:00",
        security=Security.temporary(), shared_temp_directory="/tmp",
        log_directory=tempfile.mkdtemp(prefix="kale-bench-"),
        scheduler_options={"host": "127.0.0.1", "dashboard_address": ":0"}, n_workers=2,
    )
    client = Client(cluster)
    try:
        client.wait_for_workers(2, timeout=timeout)
        return time.perf_counter() - start
    finally:
        client.close()
        cluster.close()


def kale_start_seconds(look: Callable[[Any], Any] | None = None) -> tuple[float, Any]:
    """Seconds from ``kale.start_cluster("slurm-dev")`` to 2 ready workers.

    Also what ``look(cluster)`` says before the cluster is stopped (None without it).
    """
    start = time.perf_counter()
    cluster = kale.start_cluster("slurm-dev", workers=2, walltime="00:10:00")
    try:
        assert cluster.n_workers() >= 2
        seconds = time.perf_counter() - start
        return seconds, look(cluster) if look is not None else None
    finally:
        cluster.stop()


def queue_empty(limit: float = 60) -> None:
    """Wait (at most ``limit`` seconds) until the Slurm queue holds no job."""
    deadline = time.monotonic() + limit
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
