"""Searches on real clusters: local Dask, local ipyparallel and Dask on the real Slurm."""

from __future__ import annotations

import pytest

import kale_ext as kale
from kale_ext.search import TrialState
from tests.conftest import wait_for
from tests.search import trainables


@pytest.mark.parametrize("algorithm", ["random", "tpe"])
def test_search_runs_all_trials(any_cluster, algorithm):
    search = kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1)}, metric="score",
                         mode="max", algorithm=algorithm, trials=6, cluster=any_cluster,
                         seed=1).start()
    search.wait(120)
    frame = search.results()
    assert len(frame) == 6
    assert set(frame["state"]) == {"completed"}
    assert (frame["epoch"] == 9).all()
    assert len(search.history(0)) == 9
    best = search.best
    assert best is not None
    assert best["value"] == pytest.approx(frame["best_score"].max())


def test_grid_search_runs_the_whole_grid(dask_cluster):
    space = {"x": kale.grid([0.1, 0.3, 0.5]), "epochs": kale.grid([2, 3])}
    search = kale.Search(trainables.quadratic, space, metric="score", algorithm="grid",
                         trials=100, cluster=dask_cluster).start().wait(120)
    frame = search.results()
    assert len(frame) == 6
    assert sorted(zip(frame["x"], frame["epochs"], strict=True)) == sorted(
        (x, e) for x in (0.1, 0.3, 0.5) for e in (2, 3))
    assert (frame["state"] == "completed").all()


def test_asha_prunes_bad_trials_at_rungs(dask_cluster):
    # Qualities arrive good first, so later bad trials fall below each rung's cutoff.
    qualities = [0.9, 0.8, 0.1, 0.2, 0.15, 0.05]
    search = kale.Search(trainables.curve, {"q": kale.grid(qualities), "epochs": 9},
                         metric="acc", mode="max", algorithm="grid", trials=6,
                         scheduler=kale.ASHA(max_t=9, grace_period=1, reduction_factor=3),
                         max_concurrent=1, cluster=dask_cluster).start().wait(120)
    frame = search.results().set_index("q")
    transitions = {t.trial: t for t in search.store.transitions() if t.target.is_finished()}
    for q in (0.1, 0.2, 0.15, 0.05):
        row = frame.loc[q]
        assert row["state"] == "pruned", (q, row["state"])
        assert row["epoch"] == 1  # stopped at the first rung
        assert "rung" in transitions[int(row["trial"])].reason
    assert frame.loc[0.9, "state"] == "completed"
    assert frame.loc[0.9, "epoch"] == 9


def test_trial_exception_surfaces_with_traceback(dask_cluster):
    search = kale.Search(trainables.broken, {"x": kale.uniform(0, 1)}, metric="acc",
                         trials=2, retries=3, cluster=dask_cluster).start().wait(120)
    frame = search.results()
    assert (frame["state"] == "failed").all()
    assert (frame["retries"] == 0).all()  # bugs in the trial are not retried
    record = search.store.trial(0)
    assert "ValueError: bad value x=" in record.error
    # The trial's own frame is in the traceback. (cloudpickle 3.1.3 names the file of
    # code pickled by value "<dynamic-code>", so the function and line are what is left.)
    assert "Traceback" in record.error and ", in broken\n" in record.error
    assert len(search.history(0)) == 1  # the report before the raise is kept


def test_stop_pause_resume_restart_single_trials(dask_cluster, tmp_path):
    (tmp_path / "pids").mkdir()
    base = {"log": str(tmp_path / "log.jsonl"), "pids": str(tmp_path / "pids"),
            "epochs": 40, "sleep": 0.1}
    search = kale.Search(trainables.slow_checkpointed,
                         {**base, "q": kale.choice([1.0, 2.0])}, metric="acc",
                         trials=2, cluster=dask_cluster, seed=0).start()
    runs = search.runs
    wait_for(lambda: len(runs) == 2 and all(r.last_step >= 3 for r in runs.values()),
             what="two trials reporting")
    search.stop(0)
    wait_for(lambda: runs[0].state is TrialState.STOPPED, what="trial 0 stopped")
    stopped_at = runs[0].last_step
    assert stopped_at < 40

    search.pause(1)
    wait_for(lambda: runs[1].state is TrialState.PAUSED, what="trial 1 paused")
    paused_at = runs[1].last_step
    search.resume(1)
    wait_for(lambda: runs[1].state is TrialState.RUNNING and runs[1].last_step > paused_at,
             what="trial 1 resumed")
    history = search.history(1)
    resumed = history[history["attempt"] == runs[1].attempt]
    assert resumed["resumed_from"].iloc[0] == paused_at + 1  # continued from its checkpoint

    search.restart(0, epochs=5)
    search.wait(120)
    frame = search.results().set_index("trial")
    assert frame.loc[0, "state"] == "completed" and frame.loc[0, "epoch"] == 5
    assert frame.loc[0, "epochs"] == 5
    assert frame.loc[1, "state"] == "completed" and frame.loc[1, "epoch"] == 40
    reasons = [t.reason for t in search.store.transitions(0)]
    assert any("stopped by the user" in r for r in reasons)
    assert any("restarted by the user" in r for r in reasons)


def test_restart_rejects_values_outside_the_space(dask_cluster):
    search = kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1), "sleep": 0.2},
                         metric="score", trials=1, cluster=dask_cluster).start()
    wait_for(lambda: 0 in search.runs, what="a trial")
    with pytest.raises(kale.KaleError, match="x"):
        search.restart(0, x=7.0)
    search.stop()
    search.wait(60)


def test_whole_search_stop(dask_cluster):
    search = kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1), "epochs": 200,
                                                "sleep": 0.05},
                         metric="score", trials=10, cluster=dask_cluster).start()
    wait_for(lambda: any(r.last_step >= 2 for r in search.runs.values()), what="reports")
    search.stop()
    search.wait(60)
    frame = search.results()
    assert len(frame) < 10
    assert set(frame["state"]) <= {"stopped", "completed"}
    assert search.store.search()["state"] == "stopped"


def test_bad_arguments_fail_fast_with_clear_errors(dask_cluster):
    with pytest.raises(kale.SearchError, match="mode must be 'min' or 'max'"):
        kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1)}, metric="s", mode="up")
    with pytest.raises(kale.KaleError, match="low"):
        kale.Search(trainables.quadratic, {"x": kale.uniform(1, 0)}, metric="s")
    with pytest.raises(kale.KaleError, match="JSON"):
        kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1), "obj": object()},
                    metric="s")
    with pytest.raises(kale.SearchError, match="trials must be an integer >= 1"):
        kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1)}, metric="s", trials=0)

    import threading

    lock = threading.Lock()
    with pytest.raises(kale.SearchError, match="cannot be pickled"):
        kale.Search(lambda c: lock, {"x": kale.uniform(0, 1)}, metric="s")
