"""Distributed runs on real local clusters: Dask workers and ipyparallel engines."""

from __future__ import annotations

import pytest

import kale_ext as kale
from kale_ext import ClusterError
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
