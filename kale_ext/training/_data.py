"""Data sharding: each rank reads its own part of a dataset, every sample once per epoch.

The index arithmetic (:func:`shard_indices`) is plain Python so it can be checked
without torch; :class:`ShardSampler` and :func:`shard` wrap it for torch datasets,
``DataLoader`` objects, arrays and sequences.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from kale_ext._errors import ConfigError


def shard_indices(n: int, rank: int, world_size: int, *, shuffle: bool = False, seed: int = 0,
                  epoch: int = 0, drop_last: bool = False) -> list[int]:
    """Return the indices of ``range(n)`` that ``rank`` of ``world_size`` reads in ``epoch``.

    Over all ranks the shards partition the (shuffled) indices: each sample is read
    exactly once, and shard sizes differ by at most one. With ``drop_last`` the last
    ``n % world_size`` samples of the epoch's order are left out so that every rank has
    the same number of samples (collectives then stay in lockstep); shuffling makes a
    different sample the one left out each epoch.

    Every rank must pass the same ``seed`` and ``epoch``: the order is a seeded
    permutation, identical on every rank, and ``rank`` takes every ``world_size``-th.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size) with world_size >= 1, but got "
                          f"rank={rank}, world_size={world_size}.")
    if n < 0:
        raise ConfigError(f"A dataset length must be >= 0, but got n={n}.")
    order = list(range(n))
    if shuffle:
        random.Random(int(seed) * 1_000_003 + int(epoch)).shuffle(order)
    if drop_last:
        order = order[: n - n % world_size]
    return order[rank::world_size]


def _resolve(rank: int | None, world_size: int | None) -> tuple[int, int]:
    from kale_ext.training._env import rank as current_rank
    from kale_ext.training._env import world_size as current_world_size

    return (current_rank() if rank is None else int(rank),
            current_world_size() if world_size is None else int(world_size))


class ShardSampler:
    """A sampler (``DataLoader(sampler=...)``) that yields this rank's shard of a dataset.

    Like ``torch.utils.data.DistributedSampler`` but without padding: across ranks each
    sample comes exactly once per epoch (``drop_last=True`` trades that for equal
    shard sizes). Call :meth:`set_epoch` at the start of every epoch to reshuffle.

    Parameters
    ----------
    dataset : sized
        Anything with ``len()``.
    shuffle : bool
        Permute the indices each epoch (same permutation on every rank).
    seed : int
        Seed of the permutation; must be the same on every rank.
    drop_last : bool
        Leave out the last ``len(dataset) % world_size`` samples of the epoch so that
        every rank has the same number.
    rank, world_size : int, optional
        Default: this process's rank and world size (:func:`kale.rank`).
    """

    def __init__(self, dataset: Any, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, rank: int | None = None,
                 world_size: int | None = None) -> None:
        self.n = len(dataset)
        self.rank, self.world_size = _resolve(rank, world_size)
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutation of ``epoch`` from now on (call it before each epoch)."""
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        return shard_indices(self.n, self.rank, self.world_size, shuffle=self.shuffle,
                             seed=self.seed, epoch=self.epoch, drop_last=self.drop_last)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return len(self.indices())


def shard(data: Any, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
          drop_last: bool = False, rank: int | None = None,
          world_size: int | None = None) -> Any:
    """Return this rank's shard of ``data``.

    Parameters
    ----------
    data
        A ``torch.utils.data.DataLoader`` (returned as a new loader over the same
        dataset with a :class:`ShardSampler`; call ``loader.sampler.set_epoch(e)`` each
        epoch when shuffling), a torch map-style dataset (a ``Subset``), a tensor or
        numpy array (indexed along the first axis), or a sequence (a list).
    shuffle, seed, epoch, drop_last, rank, world_size
        As for :func:`shard_indices`; rank and world size default to this process's.
        A ``DataLoader`` built with ``shuffle=True`` is sharded with shuffling.

    Returns
    -------
    The same kind of object holding only this rank's samples.
    """
    r, w = _resolve(rank, world_size)
    loader_cls = _torch_attr("utils.data", "DataLoader")
    if loader_cls is not None and isinstance(data, loader_cls):
        return _shard_loader(data, shuffle=shuffle, seed=seed, epoch=epoch,
                             drop_last=drop_last, rank=r, world_size=w)
    if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise ConfigError(f"kale.shard needs a DataLoader, a map-style dataset, an array or a "
                          f"sequence (len() and indexing), but got {type(data).__name__}.")
    idx = shard_indices(len(data), r, w, shuffle=shuffle, seed=seed, epoch=epoch,
                        drop_last=drop_last)
    if hasattr(data, "shape") and hasattr(data, "dtype"):  # torch tensor or numpy array
        return data[idx]
    dataset_cls = _torch_attr("utils.data", "Dataset")
    if dataset_cls is not None and isinstance(data, dataset_cls):
        subset = _torch_attr("utils.data", "Subset")
        assert subset is not None
        return subset(data, idx)
    return [data[i] for i in idx]


def _shard_loader(loader: Any, *, shuffle: bool, seed: int, epoch: int, drop_last: bool,
                  rank: int, world_size: int) -> Any:
    from torch.utils.data import DataLoader, RandomSampler

    if loader.batch_sampler is not None and loader.batch_size is None:
        raise ConfigError("kale.shard cannot shard a DataLoader built with a custom "
                          "batch_sampler; build it with batch_size= instead.")
    sampler = ShardSampler(loader.dataset, shuffle=shuffle or isinstance(loader.sampler,
                                                                        RandomSampler),
                           seed=seed, drop_last=drop_last, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler,
        num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        persistent_workers=loader.persistent_workers,
        prefetch_factor=loader.prefetch_factor if loader.num_workers else None,
    )


def _torch_attr(module: str, name: str) -> Any:
    """Return ``torch.<module>.<name>`` when torch is imported already, else None.

    Sharding plain data must not import torch.
    """
    import importlib
    import sys

    if "torch" not in sys.modules:
        return None
    return getattr(importlib.import_module(f"torch.{module}"), name)
