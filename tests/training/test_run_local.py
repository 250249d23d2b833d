"""Distributed runs on real local clusters: Dask workers and ipyparallel engines."""

from __future__ import annotations

import pytest

import kale_ext as kale
from kale_ext import ClusterError
from kale_ext.training import RankError
from tests.training import checks, trainables
from tests.training.conftest import needs_horovod


def test_one_step_equals_single_process_full_batch(local_cluster):
    checks.one_step_equals_full_batch(local_cluster)


@pytest.mark.horovod
@needs_horovod
def test_horovod_step_equals_single_process_full_batch(local_cluster):
    checks.one_step_equals_full_batch(local_cluster, engine="horovod")


def test_allreduce_and_environment(local_cluster):
    checks.allreduce(local_cluster)


def test_sharding_covers_the_dataset_once_per_epoch(local_cluster):
    checks.sharding_covers_each_epoch_once(local_cluster)


def test_killed_rank_fails_the_run_within_seconds(local_cluster):
    checks.killed_rank_fails_the_run(local_cluster)


def test_raising_rank_fails_the_run_with_its_traceback(local_cluster):
    checks.raising_rank_fails_with_its_traceback(local_cluster)


def test_stop_frees_a_rank_stuck_in_a_collective(local_cluster):
    checks.stop_frees_a_rank_stuck_in_a_collective(local_cluster)


def test_more_ranks_than_workers_is_refused(local_cluster):
    with pytest.raises(ClusterError, match=r"workers=3 needs 3 workers.*has 2.*scale\(3\)"):
        kale.train_distributed(trainables.allreduce, local_cluster, workers=3, place_wait=0.2)


def test_restart_resumes_from_the_last_checkpoint(local_cluster, tmp_path):
    run = kale.train_distributed(trainables.checkpointed, local_cluster, workers=2,
                                 config={"steps": 5, "marker": str(tmp_path / "died")},
                                 restarts=1)
    firsts = run.wait(120)
    assert run.state == "completed" and run.attempt == 1
    assert firsts[0] == firsts[1] >= 2  # resumed past the checkpoint of step 2 (or later)
    frame = run.results()
    assert set(frame["attempt"]) == {0, 1}
    again = frame[frame["attempt"] == 1]
    assert again["step"].min() == firsts[0] and again["step"].max() == 4
    reasons = [t.reason for t in run.store.transitions(0)]
    assert any("exited with code 3" in r for r in reasons), reasons
    assert any("launched from" in r for r in reasons), reasons


def test_no_restart_by_default(local_cluster, tmp_path):
    run = kale.train_distributed(trainables.checkpointed, local_cluster, workers=2,
                                 config={"steps": 5, "marker": str(tmp_path / "died")})
    with pytest.raises(RankError, match=r"rank 1.*exited with code 3"):
        run.wait(120)
