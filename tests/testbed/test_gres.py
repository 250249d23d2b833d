"""Four fake GPUs a node through Slurm's gres: allocation, binding, refusal of over-asks.

The GPUs are device files (no GPU on this machine); what is real is Slurm's accounting of
them and the environment it gives each task.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed

GPU_ENV = 'echo "$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES $SLURM_STEP_GPUS"'


def test_every_node_declares_four_gpus(testbed: Testbed):
    out = testbed.run("sinfo", "-h", "-N", "-p", "gpu", "-o", "%N %G").stdout
    assert dict(line.split() for line in out.splitlines()) == {
        node: "gpu:4" for node in testbed.nodes}


def test_gres_request_sets_cuda_visible_devices(testbed: Testbed):
    out = testbed.srun("-p", "gpu", "--gres=gpu:2", "bash", "-c", GPU_ENV)
    _node, visible, step_gpus = out.split()
    assert visible == step_gpus == "0,1"


def test_gpus_per_task_gives_each_task_its_own_gpu(testbed: Testbed):
    out = testbed.srun("-p", "gpu", "-N2", "-n8", "--gpus-per-task=1", "bash", "-c", GPU_ENV)
    per_node: dict[str, list[str]] = {}
    for line in out.splitlines():
        node, visible, step_gpus = line.split()
        assert visible == step_gpus, line
        per_node.setdefault(node, []).append(visible)
    assert len(per_node) == 2
    for node, gpus in per_node.items():
        assert sorted(gpus) == ["0", "1", "2", "3"], (node, gpus)


def test_concurrent_jobs_on_one_node_get_disjoint_gpus(testbed: Testbed):
    jobs = [subprocess.Popen(["srun", "-p", "gpu", "-w", "node3", "--gres=gpu:2", "bash", "-c",
                              'echo "$SLURM_STEP_GPUS"; sleep 2'],
                             stdout=subprocess.PIPE, text=True, env=testbed.env)
            for _ in range(2)]
    outs = [job.communicate(timeout=60)[0].strip() for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0]
    first, second = (set(out.split(",")) for out in outs)
    assert len(first) == len(second) == 2
    assert first.isdisjoint(second), outs


@pytest.mark.parametrize("client", ["srun", "sbatch"])
def test_over_asked_gpus_are_refused_at_once(testbed: Testbed, client: str):
    cmd = [client, "-p", "gpu", "--gres=gpu:5"]
    cmd += ["true"] if client == "srun" else ["--wrap", "true"]
    start = time.monotonic()
    proc = testbed.run(*cmd, check=False, timeout=30)
    assert proc.returncode != 0
    assert "Requested node configuration is not available" in proc.stderr
    assert time.monotonic() - start < 10
