"""A search whose trials each run on two workers as a distributed run."""

from __future__ import annotations

import pytest

import kale_ext as kale
from tests.training import trainables
from tests.training.conftest import CLUSTERS, start


@pytest.mark.parametrize("name", ["dask-local", "ipyparallel-local",
                                  pytest.param("dask-slurm", marks=pytest.mark.slurm)])
def test_two_worker_trials_complete_and_report(name, module_state):
    cluster = start(name)
    try:
        assert CLUSTERS[name]["workers"] == 2
        search = kale.Search(trainables.search_trial, {"lr": kale.grid([0.1, 0.3])},
                             metric="loss", mode="min", algorithm="grid", trials=2,
                             workers_per_trial=2, cluster=cluster).start()
        search.wait(180)
        frame = search.results()
        assert list(frame["state"]) == ["completed", "completed"], frame
        rows = search.store.metrics()
        for trial in (0, 1):
            by_rank = {r.rank: r for r in rows if r.trial == trial and r.step == 3}
            assert set(by_rank) == {0, 1}  # both ranks reported, rank kept apart
            assert {r.values["world"] for r in by_rank.values()} == {2}
        # Rank 0's reports drive the search: its loss is lr * epoch, least at epoch 1.
        best = search.best
        assert best is not None and best["config"]["lr"] == 0.1
        assert best["value"] == pytest.approx(0.1) and best["step"] == 1
    finally:
        cluster.stop()


def test_failing_rank_fails_the_trial_with_its_traceback(module_state):
    cluster = start("dask-local")
    try:
        search = kale.Search(trainables.steps_forever,
                             {"fail_rank": 1, "fail_at": 1, "sleep": 0.01},
                             metric="total", trials=1, retries=0, workers_per_trial=2,
                             cluster=cluster).start()
        search.wait(120)
        trial = search.store.trial(0)
        assert trial.state.label == "failed"
        assert "rank 1" in (trial.error or "") or "rank 1" in str(search.store.transitions(0))
        assert "boom on rank 1" in (trial.error or "")
    finally:
        cluster.stop()
