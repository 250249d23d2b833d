"""ROOT TTrees written with uproot read back as tensors, per-pixel, jagged and sharded."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from kale_ext import ConfigError
from kale_ext.models import root_dataset, shard_range

N = 23


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    data: dict[str, object] = {
        "met": rng.exponential(50.0, N).astype(np.float32),
        "ht": np.arange(N, dtype=np.float64),
        "label": (np.arange(N) % 2).astype(np.int32),
        "weight": rng.random(N),
        "cells": ak.Array([list(np.arange(i % 7, dtype=np.float64) + 1) for i in range(N)]),
        "fixed": np.tile(np.arange(3, dtype=np.float32), (N, 1)),
    }
    for p in range(12):  # pix_0 .. pix_11: pix_10 must come after pix_9
        data[f"pix_{p}"] = np.full(N, p, dtype=np.float32) + np.arange(N) * 100
    path = tmp_path_factory.mktemp("root") / "events.root"
    with uproot.recreate(path) as f:
        types = {k: v.type if isinstance(v, ak.Array) else
                 (v.dtype if v.ndim == 1 else (v.dtype, v.shape[1:]))  # type: ignore[union-attr]
                 for k, v in data.items()}
        f.mktree("events", types)
        f["events"].extend(data)
    return path


def test_scalar_round_trip(events: Path) -> None:
    ds = root_dataset(events, "events", ["met", "ht"], label="label")
    x, y = ds.tensors
    with uproot.open(events) as f:
        met = f["events"]["met"].array(library="np")
    assert x.dtype == torch.float32 and x.shape == (N, 2)
    assert np.allclose(x[:, 0].numpy(), met) and x[:, 1].tolist() == list(range(N))
    assert y.dtype == torch.int64 and y.tolist() == [i % 2 for i in range(N)]
    _, w = root_dataset(events, "events", "met", label="weight").tensors
    assert w.dtype == torch.float32


def test_per_pixel_branches_become_an_image(events: Path) -> None:
    (x,) = root_dataset(events, "events", "pix_*", image_shape=(1, 3, 4)).tensors
    assert x.shape == (N, 1, 3, 4)
    assert x[5].flatten().tolist() == [500.0 + p for p in range(12)]  # natural order


def test_jagged_and_fixed_size_branches(events: Path) -> None:
    (x,) = root_dataset(events, "events", ["cells", "fixed"], pad_to=4,
                        pad_value=-1.0).tensors
    assert x.shape == (N, 7)
    assert x[0].tolist() == [-1, -1, -1, -1, 0, 1, 2]  # no cells: all padding
    assert x[2].tolist() == [1, 2, -1, -1, 0, 1, 2]  # two cells, padded
    assert x[6].tolist() == [1, 2, 3, 4, 0, 1, 2]  # six cells, truncated
    with pytest.raises(ConfigError, match="pad_to"):
        root_dataset(events, "events", "cells")


@pytest.mark.parametrize("world", [1, 2, 3, 5, 30])
def test_shards_cover_every_entry_once(events: Path, world: int) -> None:
    seen: list[float] = []
    for rank in range(world):
        (x,) = root_dataset(events, "events", "ht", entry_start=2, entry_stop=20,
                            shard=(rank, world)).tensors
        seen += x[:, 0].tolist()
    assert seen == [float(i) for i in range(2, 20)]


def test_shard_ranges_are_balanced() -> None:
    sizes = [hi - lo for lo, hi in (shard_range(0, 10, r, 4) for r in range(4))]
    assert sizes == [2, 3, 2, 3]
    with pytest.raises(ConfigError, match="rank"):
        shard_range(0, 10, 4, 4)


def test_auto_shard_reads_the_environment(events: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    (x,) = root_dataset(events, "events", "ht", shard="auto").tensors
    assert x[:, 0].tolist() == [float(i) for i in range(N // 2, N)]


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"tree": "nope", "branches": "met"}, "has no tree 'nope'"),
    ({"tree": "events", "branches": "jet_*"}, "matches nothing"),
    ({"tree": "events", "branches": "met", "label": "missing"}, "label branch"),
    ({"tree": "events", "branches": "met", "image_shape": (2, 2)}, "image_shape"),
    ({"tree": "events", "branches": "met", "entry_start": 30}, "entry_start"),
    ({"tree": "events", "branches": "met", "shard": "rank0"}, "shard"),
])
def test_errors_name_the_problem(events: Path, kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        root_dataset(events, **kwargs)  # type: ignore[arg-type]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no ROOT file"):
        root_dataset(tmp_path / "none.root", "events", "met")
