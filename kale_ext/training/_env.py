"""Who am I: rank, world size and local rank of this process, and its device.

Inside a rank launched by :func:`kale.train_distributed` (or a distributed trial) the
answers come from the rank's context; elsewhere from the usual environment variables
(``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` of torchrun, ``HOROVOD_*`` / ``OMPI_*`` /
``PMI_*`` of horovodrun and mpirun, ``SLURM_*`` of srun), so the same training code runs
under any launcher, and alone as rank 0 of 1.
"""

from __future__ import annotations

import os
from typing import Any

from kale_ext.trial import current

_RANK_VARS = ("RANK", "HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
_SIZE_VARS = ("WORLD_SIZE", "HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
_LOCAL_VARS = ("LOCAL_RANK", "HOROVOD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
               "MPI_LOCALRANKID", "SLURM_LOCALID")


def _first_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.lstrip("-").isdigit():
            return int(value)
    return default


def rank() -> int:
    """Return this process's rank among all ranks of the run (0 when not distributed)."""
    ctx = current()
    if ctx is not None and "world_size" in ctx.extra:
        return ctx.rank
    return _first_int(_RANK_VARS, 0)


def world_size() -> int:
    """How many ranks the run has (1 when not distributed)."""
    ctx = current()
    if ctx is not None and "world_size" in ctx.extra:
        return int(ctx.extra["world_size"])
    return _first_int(_SIZE_VARS, 1)


def local_rank() -> int:
    """Return this process's rank among the ranks on its host (0 when not distributed)."""
    ctx = current()
    if ctx is not None and "local_rank" in ctx.extra:
        return int(ctx.extra["local_rank"])
    return _first_int(_LOCAL_VARS, 0)


def device() -> Any:
    """Return the ``torch.device`` this rank or trial should use.

    ``cuda:<local rank>`` (modulo the GPUs this process sees) when torch sees a GPU, else
    ``cpu``. A worker process is bound to its own GPUs (``CUDA_VISIBLE_DEVICES``: set by
    Slurm for ``--gpus-per-task``, by kale for the processes of a Dask job with
    ``gpus_per_worker``), so a trial's ``cuda:0`` is its own GPU, never a neighbour's;
    several ranks of a run on one host that all see every GPU take one each.
    """
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")
