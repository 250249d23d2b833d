"""torch.distributed inside a rank: process group and device placement.

The launcher has set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; this module turns them into a process group (gloo on CPU, nccl when
every rank has a GPU) with a finite timeout, so that a collective waiting for a dead
peer fails instead of hanging forever.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from kale_ext._errors import ConfigError

BACKENDS = ("gloo", "nccl")


def choose_backend(gpus: list[int], requested: str | None = None) -> str:
    """Return the backend: ``requested`` if given (checked), else nccl or gloo.

    nccl is chosen when every rank's host has a GPU. ``gpus`` is the number of visible
    GPUs on each rank's worker.
    """
    if requested is not None:
        if requested not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)} or None (gloo on "
                              f"CPU, nccl on GPUs), but got backend={requested!r}.")
        if requested == "nccl" and not all(gpus):
            raise ConfigError(f"backend='nccl' needs a GPU for every rank, but the workers "
                              f"have {gpus} GPUs. Use backend='gloo' or GPU workers "
                              "(gpus_per_worker in the cluster profile).")
        return requested
    return "nccl" if gpus and all(gpus) else "gloo"


def place_device(backend: str, local_rank: int, cuda: Any = None) -> Any:
    """Pin this rank to GPU ``local_rank`` (modulo the GPUs it sees) for nccl.

    Return the ``torch.device`` the rank should use. ``cuda`` defaults to ``torch.cuda``.
    """
    import torch

    cuda = torch.cuda if cuda is None else cuda
    if backend == "nccl":
        count = cuda.device_count()
        if count < 1:
            raise ConfigError(f"Rank with LOCAL_RANK={local_rank} uses nccl but sees no GPU "
                              f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}).")
        index = local_rank % count
        cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


LISTEN_FD_ENV = "KALE_MASTER_LISTEN_FD"  # rank 0's listening socket, bound by the probe


def init_process_group(backend: str, timeout: float) -> None:
    """Join the run's process group from the environment the launcher set.

    Rank 0's store listens on the socket its worker's probe bound and passed down
    (``KALE_MASTER_LISTEN_FD``) when there is one, else binds ``MASTER_PORT`` itself.
    """
    import torch.distributed as dist

    place_device(backend, int(os.environ.get("LOCAL_RANK", "0")))
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    wait = timedelta(seconds=timeout)
    fd = os.environ.get(LISTEN_FD_ENV) if rank == 0 else None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), size,
                          rank == 0, wait, master_listen_fd=int(fd) if fd else None)
    dist.init_process_group(backend, store=store, rank=rank, world_size=size, timeout=wait)


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
