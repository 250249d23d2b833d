"""GPU binding of worker processes, from the environment Slurm gives a job (no GPU here)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kale_ext import ConfigError
from kale_ext.trial import allocated_gpus, bound_gpus, gpu_binding, gpu_preload

JOB = {"CUDA_VISIBLE_DEVICES": "0,1,2,3", "SLURM_JOB_GPUS": "0,1,2,3"}


def test_allocation_from_slurm_variables():
    assert allocated_gpus({}) == ([], [])
    assert allocated_gpus(JOB) == (["0", "1", "2", "3"], ["0", "1", "2", "3"])
    # A step's GPUs win over the job's; without CUDA_VISIBLE_DEVICES they are what CUDA sees.
    assert allocated_gpus({"SLURM_JOB_GPUS": "0,1,2,3", "SLURM_STEP_GPUS": "2"}) == (["2"], ["2"])
    # Device cgroups renumber what the job sees from 0; Slurm's numbers stay the node's.
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_STEP_GPUS": "2,3"}) == (
        ["0", "1"], ["2", "3"])
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "", "SLURM_JOB_GPUS": "1"}) == ([], [])
    assert allocated_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}) == ([], [])


def test_each_process_gets_its_own_share():
    shares = [gpu_binding(i, 4, JOB) for i in range(4)]
    assert [s["CUDA_VISIBLE_DEVICES"] for s in shares] == ["0", "1", "2", "3"]
    assert [s["KALE_GPUS"] for s in shares] == ["0", "1", "2", "3"]
    assert [gpu_binding(i, 2, JOB)["CUDA_VISIBLE_DEVICES"] for i in range(2)] == ["0,1", "2,3"]
    renumbered = {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_STEP_GPUS": "6,7"}
    assert gpu_binding(1, 2, renumbered) == {"CUDA_VISIBLE_DEVICES": "1", "KALE_GPUS": "7"}
    assert gpu_binding(0, 4, {}) == {}  # a job without GPUs binds nothing


def test_uneven_split_is_refused():
    with pytest.raises(ConfigError, match=r"3 GPUs \(0,1,2\) cannot be split evenly among 2"):
        gpu_binding(0, 2, {"CUDA_VISIBLE_DEVICES": "0,1,2"})


def test_bound_gpus_prefers_kales_binding():
    assert bound_gpus({**JOB, "KALE_GPUS": "2"}) == ["2"]
    assert bound_gpus({"SLURM_STEP_GPUS": "3", "CUDA_VISIBLE_DEVICES": "3"}) == ["3"]
    assert bound_gpus({}) == []


def test_preload_binds_the_nanny_before_it_spawns(monkeypatch):
    for name, value in {**JOB, "KALE_WORKER_PROCESSES": "4"}.items():
        monkeypatch.setenv(name, value)
    nanny = SimpleNamespace(name="kc-1234-0-2", env={"OMP_NUM_THREADS": "1"})
    gpu_preload.dask_setup(nanny)
    assert nanny.env == {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "2", "KALE_GPUS": "2"}
    monkeypatch.setenv("KALE_WORKER_PROCESSES", "1")
    single = SimpleNamespace(name="kc-1234-3", env={})  # one process: no -<i> suffix
    gpu_preload.dask_setup(single)
    assert single.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    monkeypatch.setenv("KALE_WORKER_PROCESSES", "4")
    with pytest.raises(ValueError, match="does not end in -<i>"):
        gpu_preload.dask_setup(SimpleNamespace(name="kc-1234-0-7", env={}))
