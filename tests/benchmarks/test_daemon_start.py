"""Time to two ready workers on the local Slurm: kale's daemon start vs raw dask-jobqueue.

A user's first kale start starts its daemon as a new Python, which imports Dask before
its scheduler listens; it leaves a helper behind that has those imports done and forks
the daemons of later starts (without ``KALE_DAEMON_HELPER=1``: a first start).
Measured side by side in one run, raw ``SLURMCluster`` (TLS, in this process, Dask
already imported) and ``kale.start_cluster`` alternating (which goes first alternates
too; :mod:`tests.benchmarks.starts`): one first start without the helper, then
``ROUNDS`` pairs with it. Target:
kale / raw <= 1.1 for the median pair with the helper; the first start is printed.
"""

from __future__ import annotations

import os
import statistics

import pytest

from kale_ext.clusters import _daemon_start
from kale_ext.clusters._dask import DaskCluster
from tests.benchmarks.launch import side_by_side
from tests.benchmarks.starts import kale_start_seconds, queue_empty, raw_dask_jobqueue_seconds
from tests.benchmarks.targets import Targets

pytestmark = [pytest.mark.benchmark, pytest.mark.slurm]

ROUNDS = 5


def _forked(cluster) -> bool:
    return isinstance(DaskCluster._daemons.get(cluster.id), _daemon_start.ForkedDaemon)


def _pair(kale_first: bool) -> tuple[float, float, bool]:
    """One raw and one kale start (in the order given): raw s, kale s, kale's daemon forked."""
    forked: list[bool] = []

    def kale_once() -> float:
        seconds, was_forked = kale_start_seconds(_forked)
        forked.append(was_forked)
        return seconds

    steps = [("raw", raw_dask_jobqueue_seconds), ("kale", kale_once)]
    times = side_by_side(1, steps[::-1] if kale_first else steps, between=queue_empty)
    return times["raw"][0], times["kale"][0], forked[0]


@pytest.mark.timeout(1800)
def test_daemon_start_against_raw_dask_jobqueue(tmp_path):
    import dask.config

    with dask.config.set({"kale.state-dir": str(tmp_path / "state")}):
        os.environ.pop("KALE_DAEMON_HELPER", None)  # a first start: the daemon a new Python
        raw0, first, forked = _pair(kale_first=False)
        assert not forked
        os.environ["KALE_DAEMON_HELPER"] = "1"
        _daemon_start.prepare()  # what a first start leaves behind
        assert _daemon_start.wait_for_helper(300), "no daemon helper came up"
        pairs = [_pair(kale_first=i % 2 == 1) for i in range(ROUNDS)]
    forks = sum(f for _, _, f in pairs)  # a kale file edited meanwhile means a new helper
    ratios = [k / r for r, k, _ in pairs]
    median = statistics.median(ratios)
    print(f"\ntime to 2 Slurm workers ready (local Slurm), raw dask-jobqueue vs "
          f"kale.start_cluster, side by side:\n"
          f"  first start, daemon as a new Python: raw {raw0:.2f} s, kale {first:.2f} s, "
          f"ratio {first / raw0:.2f}\n"
          f"  with the daemon helper: raw {[round(r, 2) for r, _, _ in pairs]} s, kale "
          f"{[round(k, 2) for _, k, _ in pairs]} s, ratios "
          f"{[round(x, 2) for x in ratios]}, median {median:.2f} (range "
          f"{min(ratios):.2f}-{max(ratios):.2f}), target <= 1.1; {forks} of {ROUNDS} forked")
    targets = Targets()
    targets.ratio("time to 2 Dask workers on Slurm with the daemon helper, kale/raw "
                  "(median of the pairs' ratios)", median, 1.0, at_most=1.1)
    targets.assert_met()
