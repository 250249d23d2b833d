"""``TrainingRun.timings``: where a launch spent its time, on a real local Dask cluster."""

from __future__ import annotations

import time

import pytest

import kale_ext as kale
from kale_ext.training import _timings
from tests.training import trainables


def test_phases_follow_the_rank_that_reported_last():
    early = {"created": 10.5, "imported": 11.0, "rendezvous": 11.2, "first_report": 11.3}
    late = {"created": 10.4, "imported": 12.0, "rendezvous": 12.5, "first_report": 13.0}
    got = _timings.phases(9.0, 10.0, 10.2, [early, late])
    assert list(got) == list(_timings.PHASES)
    want = [1.0, 0.2, 0.2, 1.6, 0.5, 0.5]  # created 10.4, then 12.0, 12.5, 13.0
    assert [round(v, 6) for v in got.values()] == want
    assert sum(got.values()) == pytest.approx(13.0 - 9.0)


def test_phases_are_never_negative_when_a_rank_clock_lags():
    lagging = {"created": 9.5, "imported": 9.9, "rendezvous": 9.8, "returned": 10.6}
    got = _timings.phases(9.0, 10.0, 10.2, [lagging])
    assert min(got.values()) >= 0.0
    assert sum(got.values()) == pytest.approx(10.6 - 9.0)


def test_only_the_kernel_phases_before_a_rank_ends():
    got = _timings.phases(1.0, 1.5, 2.0, [{"created": 2.1}])
    assert got == {"setup": 0.5, "placement": 0.5}


@pytest.fixture(scope="module")
def dask_cluster(module_state):
    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    yield cluster
    cluster.stop()


def test_a_run_reports_where_its_launch_time_went(dask_cluster):
    start = time.time()
    run = kale.train_distributed(trainables.ddp_step, dask_cluster, workers=2,
                                 config={"lr": 0.1})
    run.wait(180)
    wall = time.time() - start
    timings = run.timings
    assert list(timings) == list(_timings.PHASES)
    assert all(v >= 0 for v in timings.values()), timings
    assert sum(timings.values()) <= wall, (timings, wall)
    assert timings["process_start"] + timings["imports"] > 0, timings  # a process is never free
    assert "imports" in _timings.summary(timings)
    shown = repr(run)
    assert "completed; launch " in shown and "first batch" in shown, shown
