"""Distributed data-parallel training across a kale cluster's workers.

``kale.train_distributed(fn, cluster, workers=4, engine="torch" | "horovod")`` runs
``fn(config)`` as one rank per worker (a Dask worker or an ipyparallel engine), with
the process group or Horovod's gloo rendezvous set up, live per-rank metrics through
``kale.report``, and prompt failure when a rank dies. A search runs each trial this way
with ``kale.Search(..., workers_per_trial=n)``.

Inside the training code: :func:`rank`, :func:`world_size`, :func:`local_rank`,
:func:`device`, :func:`shard` / :class:`ShardSampler` for data, :func:`scale_lr` and
:func:`lr_warmup` for the learning rate, :func:`cached` for data loaded once per worker
and kept across runs and trials.
"""

from __future__ import annotations

from kale_ext.training._cache import cached
from kale_ext.training._data import ShardSampler, shard, shard_indices
from kale_ext.training._env import device, local_rank, rank, world_size
from kale_ext.training._group import ENGINES, LaunchOptions, RankGroup, launch
from kale_ext.training._lr import lr_warmup, scale_lr, warmup_factor
from kale_ext.training._run import RankError, TrainingRun, launch_trial, train_distributed

__all__ = [
    "ENGINES",
    "LaunchOptions",
    "RankError",
    "RankGroup",
    "ShardSampler",
    "TrainingRun",
    "cached",
    "device",
    "launch",
    "launch_trial",
    "local_rank",
    "lr_warmup",
    "rank",
    "scale_lr",
    "shard",
    "shard_indices",
    "train_distributed",
    "warmup_factor",
    "world_size",
]
