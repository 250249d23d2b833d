"""A fixed-size Dask cluster on the ``debug`` queue with a one-minute walltime.

Slurm counts walltime in minutes, so one minute is the shortest there is. Each worker
retires at its ``--lifetime`` (48 s here, give or take 6 s) and kale replaces it with
a new job, so the cluster keeps its size; a trial running on a retiring worker leaves
it shortly before (or is cut by its retirement) and is requeued as a new attempt: a
migration, neither failed nor counted as a retry (``retries=0`` here: any lost worker
would fail its trial). About 90 s.
"""

from __future__ import annotations

import sys
import time

import cloudpickle
import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext.search import TrialState
from tests.conftest import wait_for
from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed

cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORKERS = 2


def five_seconds(config: dict) -> None:
    """A trial: five reports a second apart, the last as it ends, so that a trial asked
    to leave a retiring worker always has a report left to hear it at."""
    import time

    for step in range(5):
        time.sleep(1)
        kale.report(step=step, score=config["x"] + step)


def test_workers_retired_before_walltime_are_replaced_and_trials_migrate(
        testbed: Testbed, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLURM_CONF", testbed.env["SLURM_CONF"])
    monkeypatch.setenv("DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT", "1s")
    cluster = kale.start_cluster("slurm", profile="slurm", workers=WORKERS, queue="debug",
                                 walltime="00:01:00", memory="1GiB")
    try:
        first_jobs = set(cluster.record.job_ids)
        lifetimes = cluster.run_on_workers(lambda dask_worker: dask_worker.lifetime)
        assert all(42 <= t <= 54 for t in lifetimes.values()), lifetimes
        started = time.monotonic()
        # About 65 s of work on two workers: every first worker retires during the search.
        search = kale.Search(five_seconds, {"x": kale.uniform(0, 1)}, metric="score",
                             trials=26, retries=0, cluster=cluster, seed=5).start()
        search.wait(180)
        assert time.monotonic() - started > 60

        frame = search.results()
        assert len(frame) == 26 and set(frame["state"]) == {"completed"}, frame
        transitions = search.store.transitions()
        assert not [t for t in transitions if t.target == TrialState.FAILED]
        requeued = [t for t in transitions
                    if t.target == TrialState.PENDING and t.source is not None]
        assert requeued, "no trial ran on a retiring worker"
        assert all(t.reason.startswith("migrated from ") for t in requeued), requeued
        moved = frame.set_index("trial")["migrations"]
        assert sum(moved) == len(requeued), frame
        for t in requeued:
            record = search.store.trial(t.trial)
            assert record.attempt >= 1 and record.retries == 0, record
            # No checkpoint: the new attempt ran from the start; the cut one's rows stay
            # apart from it.
            rows = search.store.metrics(t.trial)
            assert [r.step for r in rows if r.attempt == record.attempt] == list(range(5))

        jobs = cluster.jobs()
        assert jobs["replaced"] >= WORKERS, jobs
        states = {str(j["job_id"]): j["state"] for j in jobs["jobs"]}
        assert first_jobs.isdisjoint(registry.read("clusters", cluster.id)["job_ids"])
        assert all(states.get(j) in ("COMPLETED", "CANCELLED", "GONE") for j in first_jobs), \
            states  # ended by the retirement, never by the walltime (TIMEOUT)
        wait_for(lambda: cluster.n_workers() == WORKERS, 30, 0.5,
                 what=f"the cluster back at {WORKERS} workers")
    finally:
        cluster.stop()
