"""Sharding: every sample exactly once per epoch over the ranks, for every data kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Subset, TensorDataset

import kale_ext as kale
from kale_ext import ConfigError
from kale_ext.training import ShardSampler, shard_indices


@given(n=st.integers(0, 300), world=st.integers(1, 9), shuffle=st.booleans(),
       seed=st.integers(0, 10), epoch=st.integers(0, 5))
def test_shards_partition_the_dataset(n, world, shuffle, seed, epoch):
    shards = [shard_indices(n, r, world, shuffle=shuffle, seed=seed, epoch=epoch)
              for r in range(world)]
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n))  # each sample exactly once
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


@given(n=st.integers(0, 300), world=st.integers(1, 9), seed=st.integers(0, 10),
       epoch=st.integers(0, 5))
def test_drop_last_gives_equal_shards_of_distinct_samples(n, world, seed, epoch):
    shards = [shard_indices(n, r, world, shuffle=True, seed=seed, epoch=epoch, drop_last=True)
              for r in range(world)]
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == len(flat) == n - n % world
    assert len({len(s) for s in shards}) == 1


def test_shuffle_depends_on_epoch_and_seed_only():
    a = shard_indices(100, 1, 4, shuffle=True, seed=3, epoch=2)
    assert a == shard_indices(100, 1, 4, shuffle=True, seed=3, epoch=2)
    assert a != shard_indices(100, 1, 4, shuffle=True, seed=3, epoch=3)
    assert a != shard_indices(100, 1, 4, shuffle=True, seed=4, epoch=2)


def test_bad_rank_is_named():
    with pytest.raises(ConfigError, match=r"rank=4, world_size=4"):
        shard_indices(10, 4, 4)


def test_shard_kinds():
    x = torch.arange(10)
    assert kale.shard(x, rank=1, world_size=3).tolist() == [1, 4, 7]
    assert kale.shard(np.arange(10), rank=0, world_size=3).tolist() == [0, 3, 6, 9]
    assert kale.shard(list("abcde"), rank=1, world_size=2) == ["b", "d"]
    ds = TensorDataset(torch.arange(10).float())
    sub = kale.shard(ds, rank=1, world_size=2)
    assert isinstance(sub, Subset) and [float(sub[i][0]) for i in range(len(sub))] == \
        [1, 3, 5, 7, 9]
    with pytest.raises(ConfigError, match="int"):
        kale.shard(5)


def test_sharded_loaders_cover_the_dataset_once_per_epoch():
    ds = TensorDataset(torch.arange(23))
    loader = DataLoader(ds, batch_size=4, shuffle=True)
    seen_by_epoch = []
    for epoch in range(3):
        seen = []
        for r in range(3):
            part = kale.shard(loader, rank=r, world_size=3, seed=7)
            assert isinstance(part.sampler, ShardSampler)
            part.sampler.set_epoch(epoch)
            seen += [int(v) for (batch,) in part for v in batch]
        assert sorted(seen) == list(range(23))
        seen_by_epoch.append(seen)
    assert seen_by_epoch[0] != seen_by_epoch[1]  # reshuffled per epoch


def test_shard_defaults_to_this_process_rank(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert kale.shard(list(range(6))) == [1, 3, 5]
    assert len(ShardSampler(range(7))) == 3
