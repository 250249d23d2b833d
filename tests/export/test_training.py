"""A distributed training run exports like a search: trial 0, a row per report of every rank."""

from __future__ import annotations

import pytest

import kale_ext as kale
from kale_ext.export import export
from tests.clusters.thread_backend import ThreadCluster
from tests.export import trainables


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cluster = ThreadCluster(2)
    try:
        store = tmp_path_factory.mktemp("kale-export-run") / "run.kale.sqlite"
        run = kale.train_distributed(trainables.ranks, cluster, workers=2, name="ranks",
                                     store=store, config={"lr": 0.01})
        assert sorted(run.wait(120)) == [0, 1]
        yield run
    finally:
        cluster.stop()


def test_tensorboard_keeps_each_rank_apart(run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run.export(to="tensorboard", dir=tmp_path)
    events = EventAccumulator(str(tmp_path / "ranks" / "trial-0000"))
    events.Reload()
    assert [s.step for s in events.Scalars("loss")] == [1, 2, 3]
    assert [s.value for s in events.Scalars("rank1/loss")] == pytest.approx([1 / 2, 1 / 3, 1 / 4])


def test_tables_hold_every_row_of_every_rank(run, tmp_path):
    import pandas as pd

    done = run.export(to="parquet", dir=tmp_path)
    assert (done.trials, done.rows) == (1, 6)
    metrics = pd.read_parquet(tmp_path / "ranks.metrics.parquet")
    assert sorted(zip(metrics["rank"], metrics["step"], strict=True)) == \
        [(r, s) for r in (0, 1) for s in (1, 2, 3)]
    trials = pd.read_parquet(tmp_path / "ranks.trials.parquet")
    assert list(trials["state"]) == ["completed"] and list(trials["params.lr"]) == [0.01]


def test_no_optuna_study_without_an_objective(run, tmp_path):
    with pytest.raises(kale.ConfigError, match="training without an objective"):
        export(run, to="optuna", dir=tmp_path)
