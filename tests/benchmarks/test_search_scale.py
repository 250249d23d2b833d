"""1,000 concurrent trials of one search on a local cluster: liveness at scale.

10 local Dask workers x 100 threads each run one trial per thread; every trial reports
once a second for 20 epochs (``kale.report``, acknowledged) and returns. Measured:

- completed trials and false failures (a trial that never fails on its own ends
  "failed", e.g. "no heartbeat for 10 s", or is retried after such a failure);
- rows stored, which must be trials x epochs (no row lost);
- wall time from ``start()`` to the search's end against its ideal, ``epochs`` x the
  report period (the time one trial takes on an idle machine), and of it the dispatch
  (from ``start()`` to the last trial's start) and the slowest trial's own time;
- CPU seconds this process (the search driver, its channel server and the Dask
  client) spent per 1,000 reports, and those of the 10 worker processes together.

Targets: every trial completed, 0 false failures, 0 rows lost, wall <= 1.5x ideal (the
ideal is the baseline). ``KALE_SCALE=200x5`` runs 200 trials x 5 epochs for a quick check
(any ``TRIALSxEPOCHS``; the workers' threads follow the trials).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

import kale_ext as kale
from tests.benchmarks.targets import Targets

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import it

pytestmark = pytest.mark.benchmark

WORKERS = 10
PERIOD = 1.0  # seconds between a trial's reports


def _scale() -> tuple[int, int]:
    text = os.environ.get("KALE_SCALE", "1000x20")
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or int(match[1]) < WORKERS or int(match[2]) < 1:
        raise ValueError(f"KALE_SCALE must be TRIALSxEPOCHS with at least {WORKERS} trials "
                         f"and 1 epoch, e.g. 200x5, but got {text!r}.")
    return int(match[1]), int(match[2])


TRIALS, EPOCHS = _scale()
THREADS = -(-TRIALS // WORKERS)


def epochs(config: dict[str, Any]) -> float:
    """Report once a period for ``config["epochs"]`` epochs, sleeping in between."""
    loss = 1.0
    for epoch in range(config["epochs"]):
        time.sleep(config["period"])
        loss = 1.0 / (epoch + 1 + config["x"])
        kale.report(epoch=epoch, loss=loss)
    return loss


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kale.Cluster]:
    import dask.config

    with dask.config.set({"kale.state-dir": str(tmp_path_factory.mktemp("state"))}), \
            kale.start_cluster("local", workers=WORKERS, threads_per_worker=THREADS) as c:
        c.client.wait_for_workers(WORKERS, timeout=120)
        yield c


def _cpu() -> float:
    """CPU seconds of this process so far (run on each worker)."""
    return time.process_time()


def _workers_cpu(cluster: kale.Cluster) -> float:
    return float(sum(cluster.client.run(_cpu).values()))


def run_scale(cluster: kale.Cluster, store: str) -> dict[str, float]:
    """Run the search once; return its figures."""
    search = kale.Search(epochs, {"x": kale.uniform(0, 1), "epochs": kale.choice([EPOCHS]),
                                  "period": kale.choice([PERIOD])},
                         metric="loss", mode="min", trials=TRIALS, max_concurrent=TRIALS,
                         retries=0, cluster=cluster, store=store,
                         detach=False)  # the driver here, where its CPU is measured
    workers_cpu = _workers_cpu(cluster)
    cpu, start, began = time.process_time(), time.perf_counter(), time.time()
    search.start().wait(EPOCHS * PERIOD * 50 + 600)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    workers_cpu = _workers_cpu(cluster) - workers_cpu
    frame = search.results()
    failed = [t for t in search.store.transitions() if t.target.label == "failed"]
    rows = len(search.store.metrics())
    info = search.store.search()
    trials = search.store.trials()
    dispatch = max((t.started for t in trials if t.started), default=began) - began
    longest = max((t.ended - t.started for t in trials if t.started and t.ended), default=0.0)
    if failed:
        print("first false failures:", *sorted({t.reason for t in failed})[:5], sep="\n  ")
    return {"completed": int((frame["state"] == "completed").sum()), "failed": len(failed),
            "rows": rows, "wall": wall, "cpu_per_1000": cpu / max(rows, 1) * 1000,
            "workers_cpu_per_1000": workers_cpu / max(rows, 1) * 1000,
            "dispatch": dispatch, "longest": longest,
            "lag": float((info.get("lag") or {}).get("max", float("nan")))}


@pytest.mark.timeout(1800)
def test_scale(cluster: kale.Cluster, tmp_path: Any) -> None:
    r = run_scale(cluster, str(tmp_path / "scale.kale.sqlite"))
    ideal = EPOCHS * PERIOD
    print(f"\n{TRIALS} concurrent trials ({WORKERS} workers x {THREADS} threads) x {EPOCHS} "
          f"acknowledged reports at {1 / PERIOD:g} Hz:")
    print(f"  completed {r['completed']}/{TRIALS}, false failures {r['failed']}, rows stored "
          f"{r['rows']}/{TRIALS * EPOCHS}")
    print(f"  wall {r['wall']:.1f} s, ideal {ideal:.0f} s: {r['wall'] / ideal:.2f}x (the last "
          f"trial started {r['dispatch']:.1f} s after start(); the slowest trial took "
          f"{r['longest']:.1f} s)")
    print(f"  CPU per 1,000 reports: driver process {r['cpu_per_1000']:.2f} s, workers "
          f"{r['workers_cpu_per_1000']:.2f} s; driver lag at most {r['lag']:.2f} s")
    targets = Targets()
    targets.ratio("completed trials / trials", r["completed"], TRIALS, at_least=1.0)
    targets.ratio("rows stored / reports sent", r["rows"], TRIALS * EPOCHS, at_least=1.0)
    targets.ratio("trials not failed / trials", TRIALS - r["failed"], TRIALS, at_least=1.0)
    targets.ratio("wall time / ideal", r["wall"], ideal, at_most=1.5)
    targets.assert_met()
