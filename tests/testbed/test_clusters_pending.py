"""A start whose batch jobs can never run ends within seconds, with Slurm's words.

For Dask as for ipyparallel: a job over its partition's walltime (PartitionConfig, then
PartitionTimeLimit), one over its QOS's walltime (QOSMaxWallDurationPerJobLimit, from
the test bed's slurmdbd), one needing a node that is reserved (ReqNodeNotAvail), and an
over-asked gres, which sbatch refuses at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext._errors import BatchJobError
from kale_ext.clusters import batch
from tests.conftest import wait_for
from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed

FAST = 20  # seconds: a hopeless start ends well within this (2-8 s here), not after 120


@pytest.fixture
def on_testbed(testbed: Testbed, monkeypatch: pytest.MonkeyPatch) -> Testbed:
    monkeypatch.setenv("SLURM_CONF", testbed.env["SLURM_CONF"])
    return testbed


def _no_jobs_left(tb: Testbed, error: BatchJobError) -> None:
    """Nothing of the failed start stays registered, and its job was cancelled."""
    assert list(registry.records("clusters")) == []
    if error.job_id is None:  # refused at submission: no job
        return

    def ended() -> bool:
        out = tb.run("squeue", "-h", "--states=all", "-j", str(error.job_id), "-o", "%T",
                     check=False).stdout.strip()
        return out in ("", "CANCELLED", "COMPLETED")

    wait_for(ended, 30, 0.2, what=f"job {error.job_id} to be cancelled")


def _start_fails(backend: str, **kwargs) -> tuple[BatchJobError, float]:
    start = time.monotonic()
    with pytest.raises(BatchJobError) as err:
        kale.start_cluster("slurm", profile="slurm", backend=backend, workers=1, **kwargs)
    return err.value, time.monotonic() - start


@pytest.mark.parametrize("backend", ["dask", "ipyparallel"])
def test_walltime_over_the_partitions_limit(on_testbed: Testbed, backend: str):
    # debug allows 30 minutes; Slurm accepts the job and leaves it pending for ever.
    error, took = _start_fails(backend, queue="debug", walltime="01:00:00")
    assert took < FAST, f"took {took:.1f} s"
    text = str(error)
    assert "PartitionTimeLimit" in text or "PartitionConfig" in text, text
    assert "PENDING" in text
    if backend == "dask":
        assert "walltime" in text  # what to change
    _no_jobs_left(on_testbed, error)


@pytest.mark.parametrize("ask", [{"job_extra": ["--gres=gpu:5"]}, {"gpus_per_worker": 5}],
                         ids=["gres", "gpus_per_worker"])
def test_over_asked_gres_surfaces_sbatchs_refusal(on_testbed: Testbed, ask: dict):
    # Four GPUs a node: sbatch refuses five at submission.
    error, took = _start_fails("dask", queue="gpu", **ask)
    assert took < FAST, f"took {took:.1f} s"
    assert "Requested node configuration is not available" in str(error), str(error)
    _no_jobs_left(on_testbed, error)


@pytest.fixture
def reserved_node3(on_testbed: Testbed) -> Iterator[str]:
    """node3 reserved for maintenance a day from now, for a minute.

    Only jobs that would still run then (over 24 h) are kept off node3, so the other
    users of the test bed do not notice.
    """
    name = f"kale-maint-{os.getpid()}"
    on_testbed.run("scontrol", "create", "reservation", f"ReservationName={name}",
                   "Nodes=node3", "StartTime=now+1day", "Duration=00:01:00", "Accounts=maint",
                   "Flags=MAINT")
    try:
        yield name
    finally:
        on_testbed.run("scontrol", "delete", f"ReservationName={name}", check=False)


@pytest.mark.parametrize("backend", ["dask", "ipyparallel"])
def test_a_job_needing_a_reserved_node(on_testbed: Testbed, reserved_node3: str, backend: str):
    error, took = _start_fails(backend, queue="regular", walltime="1-12:00:00",
                               job_extra=["--nodelist=node3"])
    assert took < FAST, f"took {took:.1f} s"
    assert "ReqNodeNotAvail" in str(error), str(error)
    _no_jobs_left(on_testbed, error)


@pytest.mark.parametrize("backend", ["dask", "ipyparallel"])
def test_walltime_over_the_qos_limit(on_testbed: Testbed, backend: str):
    # The "short" QOS allows 5 minutes; the partition would allow the hour. Slurm accepts
    # the job and, with limits enforced by its accounting, leaves it pending for ever.
    config = on_testbed.run("scontrol", "show", "config").stdout
    assert "accounting_storage/slurmdbd" in config, "the test bed runs without slurmdbd"
    error, took = _start_fails(backend, queue="regular", walltime="01:00:00", qos="short")
    assert took < FAST, f"took {took:.1f} s"
    text = str(error)
    assert "QOSMaxWallDurationPerJobLimit" in text, text
    assert "PENDING" in text
    if backend == "dask":
        assert "qos" in text  # what to change
    _no_jobs_left(on_testbed, error)


def test_pending_reasons_read_as_hopeless_or_not():
    slurm = batch.system("slurm")
    assert slurm.is_hopeless(batch.JobState("PENDING", "(QOSMaxWallDurationPerJobLimit)"))
    assert slurm.is_hopeless(batch.JobState("PENDING", "(ReqNodeNotAvail, UnavailableNodes:node3)"))
    assert not slurm.is_hopeless(batch.JobState("PENDING", "(Resources)"))
