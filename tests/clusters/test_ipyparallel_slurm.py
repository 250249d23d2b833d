"""ipyparallel clusters on the real local Slurm of deploy/slurm-dev (partition ``debug``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext._errors import BatchJobError
from kale_ext.clusters._ipyparallel import IPyParallelCluster
from tests.conftest import run_python, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _queued() -> dict[str, str]:
    """Jobs squeue lists now (pending, running, completing), with their states."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _wait_gone(job_ids: list[str], timeout: float = 30) -> bool:
    return bool(wait_for(lambda: not set(job_ids) & set(_queued()), timeout, 0.3,
                         what=f"jobs {job_ids} to leave the queue"))


def _python(code: str) -> str:
    return run_python(code, timeout=120)


@pytest.fixture
def started():
    clusters: list[IPyParallelCluster] = []

    def start(**kwargs) -> IPyParallelCluster:
        kwargs.setdefault("workers", 2)
        c = kale.start_cluster("slurm", backend="ipyparallel", profile="slurm-dev", **kwargs)
        assert isinstance(c, IPyParallelCluster)
        clusters.append(c)
        return c

    yield start
    for c in clusters:
        if registry.read("clusters", c.id) is not None:
            c.stop()
        subprocess.run(["scancel", *c.record.job_ids], capture_output=True, check=False)


def test_engines_in_one_srun_job_scale_reconnect_and_stop_elsewhere(started):
    c = started()
    # Both engines live in one Slurm job running srun with two tasks.
    assert len(c.record.job_ids) == 1
    job = c.record.job_ids[0]
    assert _queued().get(job) == "RUNNING"
    status = c.status()
    assert {w.job_id for w in status.workers} == {job}
    assert [(j.job_id, j.state) for j in status.jobs] == [(job, "RUNNING")]
    assert c.submit(pow, 3, 4).result(timeout=30) == 81
    assert sorted(c.run_on_workers(os.getpid)) == ["engine-0", "engine-1"]

    c.scale(3)  # one more engine set: a second job
    c.wait_for_workers(3, timeout=60)
    assert len(c.record.job_ids) == 2 and set(c.record.job_ids) <= set(_queued())
    added = c.record.job_ids[1]
    c.scale(2)  # the newest set goes, job and all
    assert len(c.client.ids) == 2 and c.record.job_ids == [job]
    assert _wait_gone([added])
    assert registry.read("clusters", c.id)["job_ids"] == [job]

    out = _python(
        "import json, kale_ext as kale\n"
        f"c = kale.connect({c.id!r})\n"
        "s = c.status()\n"
        "print(json.dumps({'n': len(s.workers), 'jobs': [j.job_id for j in s.jobs], "
        "'r': c.submit(sum, [1, 2, 3]).result(30)}))\n"
    )
    assert json.loads(out.strip().splitlines()[-1]) == {"n": 2, "jobs": [job], "r": 6}

    _python(f"import kale_ext as kale; kale.stop({c.id!r})")
    assert _wait_gone([job])
    assert registry.read("clusters", c.id) is None
    assert registry.pid_alive(c.record.owner_pid, c.record.owner_host) is False


def test_one_job_per_engine_and_scancel_is_seen_in_status(started):
    c = started(engines_per_job=1)
    assert len(c.record.job_ids) == 2
    assert all(_queued().get(j) == "RUNNING" for j in c.record.job_ids)
    assert len({w.job_id for w in c.status().workers}) == 2
    c.scale(3)
    c.wait_for_workers(3, timeout=60)
    assert len(c.record.job_ids) == 3
    c.scale(2)
    assert len(c.record.job_ids) == 2 and len(c.client.ids) == 2

    victim, survivor = c.record.job_ids
    subprocess.run(["scancel", victim], check=True)
    def states() -> dict[str, str] | None:
        jobs = {j.job_id: j.state for j in c.status().jobs}
        return jobs if jobs[victim] in ("CANCELLED", "GONE") else None

    assert wait_for(states, 30, 0.3, what=f"job {victim} to end")[survivor] == "RUNNING"
    c.stop()
    assert _wait_gone([survivor])


def test_rejected_partition_raises_with_slurms_message_fast():
    t0 = time.monotonic()
    with pytest.raises(BatchJobError, match=r"(?i)invalid partition"):
        kale.start_cluster("slurm", backend="ipyparallel", profile="slurm-dev", workers=2,
                           queue="no-such-partition")
    assert time.monotonic() - t0 < 10
    assert list(registry.records("clusters")) == []


def test_job_that_dies_before_engines_register_fails_fast_with_its_output():
    t0 = time.monotonic()
    with pytest.raises(BatchJobError) as info:
        kale.start_cluster("slurm", backend="ipyparallel", profile="slurm-dev", workers=2,
                           prologue=["echo kale-prologue-broke >&2", "exit 3"])
    assert time.monotonic() - t0 < 20
    err = info.value
    assert err.job_id and err.job_id in str(err)
    assert "kale-prologue-broke" in str(err) and "kale-prologue-broke" in err.output
    assert _wait_gone([err.job_id])
    assert list(registry.records("clusters")) == []


def test_stale_record_is_cleaned_by_clusters(started):
    c = started()
    assert [s.state for s in kale.clusters()] == ["running"]
    # The controller (with its scheduler processes) and the jobs die behind kale's back.
    os.killpg(c.record.owner_pid, signal.SIGKILL)
    subprocess.run(["scancel", *c.record.job_ids], check=True)
    assert _wait_gone(c.record.job_ids)
    owner = (c.record.owner_pid, c.record.owner_host)
    wait_for(lambda: not registry.pid_alive(*owner), 10, 0.1, what="the controller to end")
    assert kale.clusters() == []
    assert registry.read("clusters", c.id) is None
