"""Distributed training with ranks on two test-bed nodes: torch DDP and Horovod over gloo.

Each rank is an ipyparallel engine on its own node (one Slurm job, ``--nodes=2``), or a
Dask worker in a job of its own on its own node; the ranks meet over the test bed's bridge,
never over loopback. A step on half the batch per rank must equal one single-process
step on the full batch, as on one host.
"""

from __future__ import annotations

import ipaddress

import pytest

import kale_ext as kale
from tests.testbed.conftest import Testbed
from tests.testbed.kale_helpers import by_value, engines_on_two_nodes, on_testbed
from tests.training import checks, trainables

pytestmark = pytest.mark.testbed

by_value(trainables)


@pytest.fixture(scope="module")
def cluster(testbed: Testbed, tmp_path_factory):
    with on_testbed(testbed, tmp_path_factory.mktemp("kale-state")):
        cluster = engines_on_two_nodes(testbed)
        try:
            yield cluster
        finally:
            cluster.stop()


def _on_two_nodes(testbed: Testbed, run) -> None:
    hosts = [run.ranks[r]["host"] for r in (0, 1)]
    assert len(set(hosts)) == 2 and set(hosts) <= set(testbed.nodes), hosts


def test_ddp_step_across_nodes_equals_full_batch(testbed: Testbed, cluster):
    run = checks.one_step_equals_full_batch(cluster)
    _on_two_nodes(testbed, run)


def test_allreduce_meets_at_rank_zeros_node_address(testbed: Testbed, cluster):
    run = kale.train_distributed(trainables.allreduce, cluster, workers=2)
    out = run.wait(120)
    assert [o["sum"] for o in out] == [3.0, 3.0]
    assert {o["backend"] for o in out} == {"gloo"}  # the nodes' GPUs are not torch's
    master = {o["env"]["MASTER_ADDR"] for o in out}
    assert master == {testbed.nodes[run.ranks[0]["host"]]}, master
    assert not ipaddress.ip_address(master.pop()).is_loopback
    _on_two_nodes(testbed, run)


@pytest.mark.horovod
def test_horovod_step_across_nodes_equals_full_batch(testbed: Testbed, cluster):
    # No skip: the test bed's tests need every component (make test builds Horovod).
    run = checks.one_step_equals_full_batch(cluster, engine="horovod")
    _on_two_nodes(testbed, run)


def test_ddp_on_dask_workers_in_gpu_jobs_of_two_nodes(testbed: Testbed, tmp_path_factory):
    """Dask workers in two jobs that each hold 3 of a node's 4 GPUs, so no two share a node
    (and, unlike ``--exclusive``, they leave the nodes' cores to other jobs).

    Each worker sees ``CUDA_VISIBLE_DEVICES`` with three GPUs that torch cannot use (they
    are device files): kale must choose gloo, not nccl.
    """
    with on_testbed(testbed, tmp_path_factory.mktemp("kale-state")):
        cluster = kale.start_cluster(profile="slurm", workers=2, cores=1, memory="1GiB",
                                     queue="gpu", gpus_per_worker=3, walltime="00:15:00")
        try:
            run = checks.one_step_equals_full_batch(cluster)
        finally:
            cluster.stop()
    _on_two_nodes(testbed, run)
    assert all(len(r["gpus"]) == 3 for r in run.ranks.values()), run.ranks
