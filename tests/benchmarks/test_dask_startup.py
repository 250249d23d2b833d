"""Time to two ready workers on the local Slurm: kale.start_cluster vs raw dask-jobqueue.

kale's start includes what raw use does not: a detached daemon process (so the
cluster survives the kernel), a private CA and certificates, the registry record and
batch-job polling. Asserted as a ratio against raw ``SLURMCluster`` with TLS in the
same run (:mod:`tests.benchmarks.starts`, alternating): kale / raw <= 1.1.
"""

from __future__ import annotations

import statistics

import pytest

from tests.benchmarks.launch import side_by_side
from tests.benchmarks.starts import kale_start_seconds, queue_empty, raw_dask_jobqueue_seconds
from tests.benchmarks.targets import Targets

pytestmark = [pytest.mark.benchmark, pytest.mark.slurm]

ROUNDS = 3


def test_time_to_two_workers():
    times = side_by_side(ROUNDS, {"raw": lambda: raw_dask_jobqueue_seconds(120),
                                  "kale": lambda: kale_start_seconds()[0]},
                         between=lambda: queue_empty(30))
    raw, ours = times["raw"], times["kale"]
    r, k = statistics.median(raw), statistics.median(ours)
    print(f"\ntime to 2 Slurm workers ready, median of {ROUNDS}: "
          f"raw dask-jobqueue {r:.2f} s {[round(x, 2) for x in raw]}, "
          f"kale.start_cluster {k:.2f} s {[round(x, 2) for x in ours]}, "
          f"ratio kale/raw {k / r:.2f}")
    assert len(raw) == len(ours) == ROUNDS
    targets = Targets()
    targets.ratio("time to 2 Dask workers on Slurm, kale/raw", k, r, at_most=1.1)
    targets.assert_met()
