"""Time to two ready engines on the local Slurm: kale's ipyparallel backend vs raw ipyparallel.

Prints the figures and asserts their ratio: kale / raw <= 1.1 (never an absolute time).
"""

from __future__ import annotations

import statistics
import subprocess
import time

import ipyparallel
import pytest

import kale_ext as kale
from tests.benchmarks.targets import Targets

pytestmark = [pytest.mark.benchmark, pytest.mark.slurm, pytest.mark.slow]

ROUNDS = 2


def _kale() -> float:
    t0 = time.perf_counter()
    cluster = kale.start_cluster("slurm", backend="ipyparallel", profile="slurm-dev", workers=2)
    elapsed = time.perf_counter() - t0
    try:
        assert len(cluster.client.ids) == 2
    finally:
        cluster.stop()
    return elapsed


def _raw(profile_dir: str) -> float:
    cluster = ipyparallel.Cluster(n=2, engines="slurm", controller_ip="127.0.0.1",
                                  profile_dir=profile_dir)
    t0 = time.perf_counter()
    client = cluster.start_and_connect_sync()
    elapsed = time.perf_counter() - t0
    try:
        assert len(client.ids) == 2
    finally:
        client.close()
        cluster.stop_cluster_sync()
    return elapsed


def test_time_to_two_engines_ready(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # raw ipyparallel writes its sbatch file into the cwd
    times: dict[str, list[float]] = {"kale": [], "raw": []}
    for i in range(ROUNDS):
        # Alternate the order so that neither side always runs on a warm page cache.
        order = ("kale", "raw") if i % 2 == 0 else ("raw", "kale")
        for name in order:
            if name == "kale":
                times["kale"].append(_kale())
            else:
                times["raw"].append(_raw(str(tmp_path / f"raw-profile-{i}")))
            subprocess.run(["sleep", "1"], check=True)  # let Slurm reap the finished job
    kale_s, raw_s = statistics.median(times["kale"]), statistics.median(times["raw"])
    print(
        f"\nipyparallel on Slurm, time to 2 engines ready (median of {ROUNDS}):\n"
        f"  kale.start_cluster(backend='ipyparallel'): {kale_s:.2f} s  {times['kale']}\n"
        f"  raw ipyparallel.Cluster.start_and_connect_sync: {raw_s:.2f} s  {times['raw']}\n"
    )
    assert times["kale"] and times["raw"]
    targets = Targets()
    targets.ratio("time to 2 ipyparallel engines on Slurm, kale/raw", kale_s, raw_s, at_most=1.1)
    targets.assert_met()
