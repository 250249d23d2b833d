"""One GPU per trial: every worker process bound to its own GPU of a 4-GPU test-bed node.

There is no GPU on this machine: the test bed's GPUs are device files that Slurm hands
out through gres. What is checked is what the trials' processes are told
(``CUDA_VISIBLE_DEVICES``, ``KALE_GPUS``), which is all CUDA would go by; ``kale.device()``
says ``cpu`` here because torch finds no GPU behind those numbers.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

import kale_ext as kale
from kale_ext._errors import BatchJobError
from kale_ext.widgets import sample_resources
from tests.testbed.conftest import Testbed
from tests.testbed.kale_helpers import by_value, on_testbed, scratch_dir

pytestmark = pytest.mark.testbed

by_value(sys.modules[__name__])

PERLMUTTER = Path(__file__).resolve().parents[2] / "deploy" / "profiles" / "nersc-perlmutter.yaml"


def together(config):
    """Wait until all four trials run at once, then report the GPUs this one was given."""
    import os
    import socket
    import time
    from pathlib import Path

    import kale_ext as kale

    barrier = Path(config["barrier"])
    (barrier / str(config["i"])).touch()
    deadline = time.monotonic() + 90
    while len(list(barrier.iterdir())) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    kale.report(step=0, together=len(list(barrier.iterdir())), host=socket.gethostname(),
                visible=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                bound=os.environ.get("KALE_GPUS", ""), device=str(kale.device()))


def where():
    """The GPUs an engine was given by Slurm."""
    import os
    import socket

    return socket.gethostname(), os.environ.get("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="module")
def kale_testbed(testbed: Testbed, tmp_path_factory):
    with on_testbed(testbed, tmp_path_factory.mktemp("kale-state")):
        yield testbed


def test_four_concurrent_trials_see_four_distinct_gpus(kale_testbed: Testbed):
    """A Perlmutter-style Dask job: one node's 4 GPUs, 4 worker processes, 4 trials."""
    testbed = kale_testbed
    # Two threads a process: nothing but the binding keeps two trials off one GPU.
    cluster = kale.start_cluster(profile="slurm", workers=4, processes=4, cores=8,
                                 memory="4GiB", gpus_per_worker=4, queue="gpu",
                                 walltime="00:15:00")
    barrier = scratch_dir(testbed, "kale-gpus")
    try:
        search = kale.Search(together, {"i": kale.choice([0, 1, 2, 3]),
                                        "barrier": str(barrier)},
                             metric="together", algorithm="grid", trials=4, cluster=cluster,
                             name="gpus-per-trial")
        search.start().wait(180)
        frame = search.results()
        assert list(frame["state"]) == ["completed"] * 4, frame
        assert set(frame["together"]) == {4}, "the four trials did not run at once"
        assert frame["host"].nunique() == 1  # one 4-GPU node
        assert sorted(frame["visible"]) == ["0", "1", "2", "3"], frame[["worker", "visible"]]
        assert list(frame["bound"]) == list(frame["visible"])  # no cgroups: same numbers
        assert frame["worker"].nunique() == 4
        assert set(frame["device"]) == {"cpu"}  # no real GPU behind the numbers
        # The resource panel's samples carry each worker's GPU ids, next to its trials.
        samples = cluster.run_on_workers(sample_resources)
        bound = {worker: s["bound_gpus"] for worker, s in samples.items()}
        assert sorted(gpu for gpus in bound.values() for gpu in gpus) == ["0", "1", "2", "3"]
        by_worker = dict(zip(frame["worker"], frame["bound"], strict=True))
        assert all(bound[w] == [gpu] for w, gpu in by_worker.items()), (bound, by_worker)
    finally:
        cluster.stop()
        shutil.rmtree(barrier, ignore_errors=True)


def test_perlmutter_ipyparallel_profile_takes_one_node(kale_testbed: Testbed):
    """The perlmutter-gpu-ipp profile's resources: four engines, one GPU each, one node."""
    site = yaml.safe_load(PERLMUTTER.read_text())["kale"]["profiles"]["perlmutter-gpu-ipp"]
    # The resource keys as the site file has them; the centre's qos and constraint are not
    # in the test bed, and its gpu partition stands for Perlmutter's GPU nodes.
    resources = {key.replace("-", "_"): site[key]
                 for key in ("workers", "engines-per-job", "gpus-per-worker")}
    assert resources["workers"] == resources["engines_per_job"] == 4
    common = dict(backend="ipyparallel", queue="gpu", walltime="00:10:00")
    cluster = kale.start_cluster(site["kind"], **resources, **common)
    try:
        seen = cluster.run_on_workers(where)
        assert len({host for host, _ in seen.values()}) == 1, seen
        assert sorted(gpus for _, gpus in seen.values()) == ["0", "1", "2", "3"], seen
    finally:
        cluster.stop()
    # Four GPUs an engine, as the profile had it, asks a 4-GPU node for 16: refused.
    with pytest.raises(BatchJobError, match="Requested node configuration is not available"):
        kale.start_cluster(site["kind"], **{**resources, "gpus_per_worker": 4}, **common)
