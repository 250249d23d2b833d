"""Time to two ready workers on the local Slurm: kale.start_cluster vs raw dask-jobqueue.

kale's start includes what raw use does not: a detached daemon process (so the
cluster survives the kernel), a private CA and certificates, the registry record and
batch-job polling. Asserted as a ratio against raw ``SLURMCluster`` with TLS in the
same run: kale / raw <= 1.1.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time

import pytest

import kale_ext as kale
from tests.benchmarks.targets import Targets

pytestmark = [pytest.mark.benchmark, pytest.mark.slurm]

ROUNDS = 3


def _raw_seconds() -> float:
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
        client.wait_for_workers(2, timeout=120)
        return time.perf_counter() - start
    finally:
        client.close()
        cluster.close()


def _kale_seconds() -> float:
    start = time.perf_counter()
    cluster = kale.start_cluster("slurm-dev", workers=2, walltime="00:10:00")
    try:
        assert cluster.n_workers() >= 2
        return time.perf_counter() - start
    finally:
        cluster.stop()


def _queue_empty() -> None:
    deadline = time.monotonic() + 30
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)


def test_time_to_two_workers():
    raw: list[float] = []
    ours: list[float] = []
    for _ in range(ROUNDS):  # alternate so that drift in the machine's load hits both
        _queue_empty()
        raw.append(_raw_seconds())
        _queue_empty()
        ours.append(_kale_seconds())
    r, k = statistics.median(raw), statistics.median(ours)
    print(f"\ntime to 2 Slurm workers ready, median of {ROUNDS}: "
          f"raw dask-jobqueue {r:.2f} s {[round(x, 2) for x in raw]}, "
          f"kale.start_cluster {k:.2f} s {[round(x, 2) for x in ours]}, "
          f"ratio kale/raw {k / r:.2f}")
    assert len(raw) == len(ours) == ROUNDS
    targets = Targets()
    targets.ratio("time to 2 Dask workers on Slurm, kale/raw", k, r, at_most=1.1)
    targets.assert_met()
