"""Launch to first step of 2 ranks on fresh and on warm workers, against torchrun/horovodrun.

Each round starts a new cluster of 2 workers (not timed), then times, in turn: the
command-line launcher, kale's first run on those workers (which starts each worker's
zygote: Python and the torch import, once), two warm runs (ranks forked from the
zygotes), the launcher again. Script, launchers and timing loop are those of
:mod:`tests.benchmarks.launch`. Ratios are against the median launcher time of the same
round, so that the machine's load drifts into both. Cases:

* local Dask workers, torch: ``torchrun --nproc-per-node 2``;
* local Dask workers, Horovod over gloo: ``horovodrun --gloo -np 2``;
* workers in jobs of the local Slurm (deploy/slurm-dev), torch: ``srun -n1 -c2
  torchrun --nproc-per-node 2``, a job step per launch, as a user without kale re-runs.

Targets: the first run <= 1.0x the launcher, a warm run <= 0.3x (medians over rounds).
"""

from __future__ import annotations

import importlib.util
import statistics

import pytest

import kale_ext as kale
from kale_ext.training._timings import summary
from tests.benchmarks.launch import kale_run, launcher, load_script, side_by_side, spread
from tests.benchmarks.targets import Targets
from tests.conftest import slurm_available

pytestmark = pytest.mark.benchmark

ROUNDS = 3
WARM_RUNS = 2

CASES = {
    "local-torch": ("torch", dict(kind="local", backend="dask", workers=2), False),
    "local-horovod": ("horovod", dict(kind="local", backend="dask", workers=2), False),
    "slurm-torch": ("torch", dict(profile="slurm-dev", backend="dask", workers=2), True),
}


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    return load_script(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    import dask.config

    with dask.config.set({"kale.state-dir": str(tmp_path_factory.mktemp("state"))}):
        yield


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("case", [
    "local-torch",
    pytest.param("local-horovod", marks=pytest.mark.horovod),
    pytest.param("slurm-torch", marks=pytest.mark.slurm)])
def test_warm_launch_to_first_step(case, script, state):
    engine, where, srun = CASES[case]
    if engine == "horovod" and importlib.util.find_spec("horovod") is None:
        pytest.fail("the horovod module is not installed: bash deploy/horovod/build.sh")
    if srun and not slurm_available():
        pytest.fail("no running Slurm on this machine: start it with deploy/slurm-dev/up.sh")
    path, module = script
    name = ("srun torchrun" if srun else "torchrun") if engine == "torch" \
        else "horovodrun --gloo"
    first_ratios: list[float] = []
    warm_ratios: list[float] = []
    lines = []
    for i in range(ROUNDS):
        cluster = kale.start_cluster(**where)
        timings: list[dict[str, float]] = []

        def kale_once(warm: bool = True) -> float:
            seconds, run_timings = kale_run(engine, module, cluster, warm=warm)  # noqa: B023
            timings.append(run_timings)  # noqa: B023
            return seconds

        cli = launcher(engine, path, srun=srun)
        try:
            times = side_by_side(1, [(name, cli), ("first", kale_once),
                                     *[("warm", kale_once)] * WARM_RUNS, (name, cli)])
        finally:
            cluster.stop()
        base, first, warm = statistics.median(times[name]), times["first"][0], times["warm"]
        first_ratios.append(first / base)
        warm_ratios += [w / base for w in warm]
        lines.append(f"  round {i}: {name} {[round(b, 2) for b in times[name]]} s, kale first "
                     f"{first:.2f} s ({first / base:.2f}x), warm {[round(w, 2) for w in warm]} s "
                     f"({', '.join(f'{w / base:.2f}x' for w in warm)})\n"
                     f"    first: {summary(timings[0])}\n"
                     f"    warm:  {summary(timings[-1])}")
    f, w = statistics.median(first_ratios), statistics.median(warm_ratios)
    print(f"\nlaunch to first step, 2 ranks, {case}, {ROUNDS} rounds, each against its own "
          f"{name}:\n" + "\n".join(lines) +
          f"\n  kale first run / {name}: {spread(first_ratios)}\n"
          f"  kale warm run / {name}: {spread(warm_ratios)}")
    targets = Targets()
    targets.ratio(f"{case}: first run, kale/{name} (median of per-round ratios)", f, 1.0,
                  at_most=1.0)
    targets.ratio(f"{case}: warm run, kale/{name} (median of per-round ratios)", w, 1.0,
                  at_most=0.3)
    targets.assert_met()
