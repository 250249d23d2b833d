"""Distributed runs on the real local Slurm: Dask workers and ipyparallel engines in jobs."""

from __future__ import annotations

import subprocess

import pytest

from tests.training import checks
from tests.training.conftest import needs_horovod

pytestmark = pytest.mark.slurm


def test_one_step_equals_single_process_full_batch(slurm_cluster):
    checks.one_step_equals_full_batch(slurm_cluster)


@pytest.mark.horovod
@needs_horovod
def test_horovod_step_equals_single_process_full_batch(slurm_cluster):
    checks.one_step_equals_full_batch(slurm_cluster, engine="horovod")


def test_allreduce_and_environment(slurm_cluster):
    checks.allreduce(slurm_cluster)


def test_killed_rank_fails_the_run_within_seconds(slurm_cluster):
    checks.killed_rank_fails_the_run(slurm_cluster)
    jobs = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True)
    assert jobs.returncode == 0  # the cluster's jobs are still there: only the rank died
