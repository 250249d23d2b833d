"""Launch-to-first-step of 2 ranks: kale.train_distributed vs torchrun / horovodrun.

The script, launchers and timing loop are :mod:`tests.benchmarks.launch`'s. kale's
launch runs on a ready local Dask cluster, with a new Python per rank as the launchers
start (``warm=False``; warm ranks forked from a zygote are test_warm_launch.py's), and
includes what the command-line launchers do not: placing ranks on distinct workers,
probing them for rank 0's address and a free port, the metric channel and the run's
store. Asserted as ratios in the same run, with the start-up target of clusters:
kale / launcher <= 1.1 (a 2-core machine: the ranks share the cores).
"""

from __future__ import annotations

import importlib.util
import statistics

import pytest

import kale_ext as kale
from tests.benchmarks.launch import kale_run, launcher, load_script, side_by_side
from tests.benchmarks.targets import Targets

pytestmark = pytest.mark.benchmark

ROUNDS = 3


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    return load_script(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import dask.config

    with dask.config.set({"kale.state-dir": str(tmp_path_factory.mktemp("state"))}):
        c = kale.start_cluster(kind="local", backend="dask", workers=2)
        yield c
        c.stop()


@pytest.mark.parametrize("engine", ["torch", pytest.param("horovod", marks=pytest.mark.horovod)])
def test_launch_to_first_step(engine, script, cluster):
    if engine == "horovod" and importlib.util.find_spec("horovod") is None:
        pytest.fail("the horovod module is not installed: bash deploy/horovod/build.sh")
    path, module = script
    name = "torchrun" if engine == "torch" else "horovodrun --gloo"
    times = side_by_side(ROUNDS, {
        name: launcher(engine, path),
        "kale": lambda: kale_run(engine, module, cluster, warm=False)[0]})
    c, k = statistics.median(times[name]), statistics.median(times["kale"])
    print(f"\nlaunch to first step, 2 ranks, {engine}, median of {ROUNDS} (2 cores): "
          f"{name} {c:.2f} s {[round(x, 2) for x in times[name]]}, kale.train_distributed "
          f"on a ready Dask cluster {k:.2f} s {[round(x, 2) for x in times['kale']]}, "
          f"ratio kale/{name} {k / c:.2f}")
    assert len(times[name]) == len(times["kale"]) == ROUNDS
    targets = Targets()
    targets.ratio(f"launch to first step, {engine}, kale/{name}", k, c, at_most=1.1)
    targets.assert_met()
