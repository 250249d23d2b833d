"""A Dask cluster on the real local Slurm of deploy/slurm-dev."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time

import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext._errors import BatchJobError
from tests.conftest import process_gone, run_python, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _queue(cluster_id: str) -> dict[str, str]:
    """Job id -> state of the cluster's jobs Slurm still lists as pending or running."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", f"--name=kale-{cluster_id}"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _until(predicate, timeout: float = 30, what: str = "condition") -> None:
    wait_for(predicate, timeout, 0.2, what=what)


def _python(code: str) -> str:
    return run_python(code, timeout=120)


@pytest.fixture
def cluster(monkeypatch):
    # The daemon forgets a departed worker after 1 s instead of 15 s.
    monkeypatch.setenv("DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT", "1s")
    c = kale.start_cluster("slurm-dev", walltime="00:10:00")
    yield c
    if registry.read("clusters", c.id) is not None:
        with contextlib.suppress(Exception):
            c.stop()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(c.record.owner_pid, signal.SIGKILL)
    subprocess.run(["scancel", f"--name=kale-{c.id}"], check=False)


def test_two_jobs_work_scale_reconnect_and_stop_from_elsewhere(cluster):
    jobs = _queue(cluster.id)
    assert len(jobs) == 2 and set(jobs.values()) == {"RUNNING"}
    assert sorted(cluster.record.job_ids) == sorted(jobs)
    assert cluster.submit(sum, [1, 2, 3]).result(timeout=30) == 6
    status = cluster.status()
    assert {w.job_id for w in status.workers} == set(jobs)
    assert status.memory == 2 * 2**30 and status.cores == 2

    cluster.scale(3)
    cluster.wait_for_workers(3, timeout=60)
    assert len(_queue(cluster.id)) == 3
    assert len(registry.read("clusters", cluster.id)["job_ids"]) == 3  # record follows
    cluster.scale(2)
    _until(lambda: cluster.n_workers() == 2 and len(_queue(cluster.id)) == 2, 30,
           "scale down to 2 workers and 2 jobs")

    out = _python(
        "import json, kale_ext as kale\n"
        f"c = kale.connect({cluster.id!r})\n"
        "print(json.dumps({'r': c.submit(pow, 3, 3).result(timeout=30),\n"
        "                  'jobs': len([j for j in c.status().jobs if j.state == 'RUNNING'])}))\n"
    )
    assert json.loads(out.strip().splitlines()[-1]) == {"r": 27, "jobs": 2}

    pid = cluster.record.owner_pid
    _python(f"import kale_ext as kale; kale.stop({cluster.id!r})")
    _until(lambda: not _queue(cluster.id), 30, "every job to leave squeue")
    _until(lambda: registry.pid_alive(pid, os.uname().nodename) is False, 30, "daemon exit")
    assert registry.read("clusters", cluster.id) is None


def test_tls_is_on_and_plain_tcp_is_refused(cluster):
    from distributed import Client

    assert cluster.record.address.startswith("tls://127.0.0.1:")
    with pytest.raises((OSError, TimeoutError)):
        Client(cluster.record.address.replace("tls://", "tcp://"), timeout=3,
               set_as_default=False)
    workers = cluster.client.scheduler_info(n_workers=-1)["workers"]
    assert all(addr.startswith("tls://") for addr in workers)


def test_scancel_of_a_worker_job_shows_in_status(cluster):
    victim = sorted(cluster.record.job_ids)[0]
    subprocess.run(["scancel", victim], check=True)

    def seen() -> bool:
        status = cluster.status()
        states = {j.job_id: j.state for j in status.jobs}
        return states.get(victim) in ("CANCELLED", "GONE") and len(status.workers) == 1

    _until(seen, 30, f"status() to show job {victim} cancelled and one worker")
    # The daemon drops the job from the record once the scheduler has lost its worker.
    _until(lambda: victim not in registry.read("clusters", cluster.id)["job_ids"], 30,
           "the record to drop the cancelled job")


def test_rejected_partition_raises_slurms_message_fast():
    start = time.monotonic()
    with pytest.raises(BatchJobError) as err:
        kale.start_cluster("slurm-dev", queue="nosuchpartition")
    elapsed = time.monotonic() - start
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert "invalid partition" in str(err.value).lower()
    assert "nosuchpartition" in str(err.value)
    assert list(registry.records("clusters")) == []


def test_job_that_dies_before_its_workers_connect_shows_its_output():
    start = time.monotonic()
    with pytest.raises(BatchJobError) as err:
        kale.start_cluster("slurm-dev", workers=1,
                           prologue=["echo 'module python/9 not found' >&2", "exit 3"])
    assert time.monotonic() - start < 15
    assert err.value.job_id
    assert "module python/9 not found" in str(err.value)
    assert "FAILED" in str(err.value)
    assert list(registry.records("clusters")) == []


def test_stale_record_is_cleaned(cluster):
    os.killpg(cluster.record.owner_pid, signal.SIGKILL)  # the daemon dies uncleanly
    subprocess.run(["scancel", *cluster.record.job_ids], check=True)
    _until(lambda: not _queue(cluster.id), 30, "the orphaned jobs to end")
    assert [s.id for s in kale.clusters(clean=False)] == [cluster.id]
    assert kale.clusters() == []
    assert registry.read("clusters", cluster.id) is None


def test_adaptive_cluster_replaces_workers_retiring_before_walltime(monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT", "1s")
    # A 30 s walltime: the lifetime margin shrinks to 6 s, so the worker retires at ~24 s.
    c = kale.start_cluster("slurm-dev", workers=1, walltime="00:30")
    try:
        (first,) = c.record.job_ids
        lifetimes = c.run_on_workers(lambda dask_worker: dask_worker.lifetime)
        assert all(18 <= t <= 30 for t in lifetimes.values()), lifetimes
        c.adapt(1, 1)

        def replaced() -> bool:
            active = registry.read("clusters", c.id)["job_ids"]
            return bool(active) and first not in active and c.n_workers() == 1

        _until(replaced, 75, "a new job to replace the retired worker")
        assert c.submit(max, 3, 4).result(timeout=30) == 4
        states = {j.job_id: j.state for j in c.status().jobs}
        assert states[first] in ("COMPLETED", "GONE", "CANCELLED"), states
    finally:
        c.stop()
    _until(lambda: not _queue(c.id), 30, "every job to leave squeue")


def test_stop_cancels_the_jobs_of_a_cluster_whose_daemon_died(cluster):
    os.killpg(cluster.record.owner_pid, signal.SIGKILL)
    # Dead, not dying: a daemon still alive a moment after the signal would be connected
    # to, and a connection refused is retried for its whole 10 s timeout.
    assert process_gone(cluster.record.owner_pid)
    assert len(_queue(cluster.id)) == 2  # orphaned workers keep their jobs
    start = time.monotonic()
    kale.stop(cluster.id)
    assert time.monotonic() - start < 10
    _until(lambda: not _queue(cluster.id), 30, "the orphaned jobs to be cancelled")
    assert registry.read("clusters", cluster.id) is None
