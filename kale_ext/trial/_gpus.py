"""Which GPUs a worker process may use: read from the batch system, bound per process.

A batch job that holds several GPUs and runs several worker processes (a Dask job with
``processes=4`` on a 4-GPU node) must give each process its own GPUs, or every trial
would start on GPU 0. Slurm says what the job holds (``CUDA_VISIBLE_DEVICES``, set by
its gres plug-in, and ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``, the node's own GPU
indices); :func:`gpu_binding` splits that list into equal contiguous shares, one a process,
and the process's ``CUDA_VISIBLE_DEVICES`` becomes its share. Processes that Slurm
started one per task with ``--gpus-per-task`` (ipyparallel engines under ``srun``) are
bound by Slurm itself and need nothing here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kale_ext._errors import ConfigError

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
BOUND_GPUS_ENV = "KALE_GPUS"
"""The node's GPU indices bound to this process (comma-separated), as the batch system
names them: what the resource panel shows next to each worker's trials."""
GPU_PROCESSES_ENV = "KALE_WORKER_PROCESSES"
"""How many worker processes of one batch job share its GPUs (set in the job script)."""

# Slurm's names for a step's and a job's GPUs (node indices), then other launchers'.
_ALLOCATION_VARS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL")


def _ids(value: str | None) -> list[str]:
    if value is None or value.strip() in ("", "NoDevFiles", "-1"):
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def allocated_gpus(environ: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Return the GPUs this process's job or step holds: ``(visible, node_ids)``.

    ``visible`` are the names CUDA takes in ``CUDA_VISIBLE_DEVICES`` (indices, or UUIDs);
    ``node_ids`` the same GPUs as the batch system numbers them on the node
    (``SLURM_STEP_GPUS``, else ``SLURM_JOB_GPUS``), which differ from ``visible`` where
    device cgroups renumber the GPUs a job sees from 0. Both are empty without GPUs.
    """
    env = os.environ if environ is None else environ
    node_ids: list[str] = next((ids for ids in (_ids(env.get(v)) for v in _ALLOCATION_VARS)
                                if ids), [])
    visible = _ids(env.get(VISIBLE_ENV)) if VISIBLE_ENV in env else list(node_ids)
    if len(node_ids) != len(visible):
        node_ids = list(visible)
    return visible, node_ids


def share(gpus: list[str], index: int, processes: int) -> list[str]:
    """Return the GPUs of process ``index`` of ``processes``.

    The processes get equal contiguous shares of ``gpus``.

    Raises
    ------
    ConfigError
        When there are GPUs but fewer than processes, or a number that does not divide
        evenly, since some processes would share a GPU or leave one idle.
    """
    if processes < 1 or not 0 <= index < processes:
        raise ConfigError(f"GPU binding needs 0 <= index < processes, but got index={index}, "
                          f"processes={processes}.")
    if not gpus:
        return []
    if len(gpus) % processes:
        raise ConfigError(
            f"{len(gpus)} GPUs ({','.join(gpus)}) cannot be split evenly among {processes} "
            f"worker processes of one job. Make gpus_per_worker a multiple of processes "
            f"(for example gpus_per_worker={processes}, one GPU a process).")
    per = len(gpus) // processes
    return gpus[index * per:(index + 1) * per]


def gpu_binding(index: int, processes: int,
            environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment that binds worker process ``index`` of ``processes`` to GPUs.

    Empty when the job holds no GPU; otherwise ``CUDA_VISIBLE_DEVICES`` (the process's
    share) and ``KALE_GPUS`` (the same GPUs as node indices).
    """
    visible, node_ids = allocated_gpus(environ)
    if not visible:
        return {}
    return {VISIBLE_ENV: ",".join(share(visible, index, processes)),
            BOUND_GPUS_ENV: ",".join(share(node_ids, index, processes))}


def bound_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the node's GPU indices this process may use (``[]`` without GPUs).

    ``KALE_GPUS`` where kale bound the process, else what the batch system allocated to
    it (Slurm's ``SLURM_STEP_GPUS`` for a task started with ``--gpus-per-task``).
    """
    env = os.environ if environ is None else environ
    if BOUND_GPUS_ENV in env:
        return _ids(env[BOUND_GPUS_ENV])
    return allocated_gpus(env)[1]
