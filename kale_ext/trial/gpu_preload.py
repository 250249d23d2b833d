"""Dask nanny preload that gives each worker process of a GPU job its own GPUs.

kale's batch jobs start their workers with ``dask worker --preload-nanny
kale_ext.trial.gpu_preload`` when the job holds GPUs. All worker processes of a job are
started by one ``dask worker --nworkers N`` command and inherit the job's
``CUDA_VISIBLE_DEVICES``; before a nanny spawns its worker process, :func:`dask_setup`
narrows that process's ``CUDA_VISIBLE_DEVICES`` to its own share (see
:func:`kale_ext.trial.gpu_binding`). The process's index is the ``-<i>`` suffix that
``dask worker`` appends to the worker names of a job, and the count comes from
``KALE_WORKER_PROCESSES``, which the job script sets.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kale_ext.trial._gpus import GPU_PROCESSES_ENV, gpu_binding

logger = logging.getLogger(__name__)


def process_index(name: Any, processes: int) -> int:
    """Return the index of a job's worker process from its name (``<job name>-<i>``)."""
    if processes == 1:
        return 0
    suffix = str(name).rsplit("-", 1)[-1]
    if not suffix.isdigit() or int(suffix) >= processes:
        raise ValueError(f"worker name {name!r} does not end in -<i> with i < {processes}, "
                         "as `dask worker --nworkers` names a job's processes")
    return int(suffix)


def dask_setup(nanny: Any) -> None:
    """Bind the worker process ``nanny`` is about to start to its share of the GPUs."""
    processes = int(os.environ.get(GPU_PROCESSES_ENV, "1") or 1)
    env = gpu_binding(process_index(nanny.name, processes), processes)
    if env:
        nanny.env.update(env)
        logger.info("worker %s bound to GPUs %s (CUDA_VISIBLE_DEVICES=%s)", nanny.name,
                    env["KALE_GPUS"], env["CUDA_VISIBLE_DEVICES"])
