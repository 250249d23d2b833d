"""ROOT datasets over many files: globs, per-rank shards across files, streamed batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import uproot

from kale_ext import ConfigError
from kale_ext.models import load_dataset, root_dataset
from kale_ext.models._root import root_files

SIZES = {"run_2.root": 7, "run_10.root": 11, "run_3.root": 0, "run_7.root": 5}
ORDER = ["run_2.root", "run_3.root", "run_7.root", "run_10.root"]  # natural order
TOTAL = sum(SIZES.values())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four files of a tree whose ``ht`` numbers the entries across files in natural order."""
    folder = tmp_path_factory.mktemp("runs")
    offset = 0
    for name in ORDER:
        n = SIZES[name]
        ht = np.arange(offset, offset + n, dtype=np.float64)
        data = {"ht": ht, "label": (ht % 3).astype(np.int32),
                "image": np.repeat(ht[:, None], 4, axis=1).astype(np.float32)}
        with uproot.recreate(folder / name) as f:
            f.mktree("events", {"ht": np.float64, "label": np.int32,
                                "image": (np.float32, (4,))})
            if n:
                f["events"].extend(data)
        offset += n
    return folder


def _ht(batches: object) -> list[float]:
    return [float(v) for batch in batches for v in batch[0][:, 0]]  # type: ignore[attr-defined]


def test_a_glob_reads_the_files_in_natural_order(runs: Path) -> None:
    assert [Path(f).name for f in root_files(str(runs / "run_*.root"))] == ORDER
    x, y = root_dataset(str(runs / "run_*.root"), "events", ["ht", "image"], "label").tensors
    assert x.shape == (TOTAL, 5) and x[:, 0].tolist() == list(range(TOTAL))
    assert y.tolist() == [i % 3 for i in range(TOTAL)]
    listed = root_dataset([runs / "run_10.root", runs / "run_2.root"], "events", "ht")
    assert listed.tensors[0][:, 0].tolist() == [*range(12, 23), *range(7)]  # as listed
    with pytest.raises(ConfigError, match="no ROOT file matches"):
        root_files(str(runs / "nope_*.root"))
    assert root_files("root://eos.example.org//data/run.root") == [
        "root://eos.example.org//data/run.root"]  # handed to uproot (XRootD) as it is


@pytest.mark.parametrize("world", [1, 2, 3, 7])
@pytest.mark.parametrize("stream", [False, True])
def test_rank_shards_span_files_and_cover_every_entry_once(runs: Path, world: int,
                                                           stream: bool) -> None:
    seen: list[float] = []
    for rank in range(world):
        data = root_dataset(str(runs / "*.root"), "events", "ht", entry_start=1,
                            entry_stop=22, shard=(rank, world), stream=stream,
                            batch_size=4, step_size=3)
        seen += _ht(data) if stream else data.tensors[0][:, 0].tolist()
    assert seen == [float(i) for i in range(1, 22)]


def test_a_stream_reads_chunks_and_yields_batches_across_files(runs: Path) -> None:
    stream = root_dataset(str(runs / "*.root"), "events", "image", "label",
                          image_shape=(1, 2, 2), stream=True, batch_size=5, step_size=4)
    chunks = list(stream.reader.chunks(stream.parts, "events", 4))
    assert max(len(x) for x, _ in chunks) == 4  # never more than a step in memory
    batches = list(stream)
    assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 3] and len(stream) == 5
    assert batches[0][0].shape == (5, 1, 2, 2) and batches[0][1].dtype == torch.int64
    assert _ht([(b[0].flatten(1), b[1]) for b in batches]) == list(range(TOTAL))
    dropped = root_dataset(str(runs / "*.root"), "events", "ht", stream=True, batch_size=5,
                           drop_last=True)
    assert len(dropped) == 4 and [len(b[0]) for b in dropped] == [5] * 4


def test_shuffling_stays_within_chunks_and_follows_the_epoch(runs: Path) -> None:
    stream = root_dataset(str(runs / "*.root"), "events", "ht", stream=True, batch_size=23,
                          step_size=6, shuffle=True, seed=1)
    first = _ht(stream)
    stream.set_epoch(1)
    second = _ht(stream)
    assert sorted(first) == sorted(second) == list(range(TOTAL)) and first != second
    assert sorted(first[:6]) == list(range(6))  # the first chunk stays the first


def test_dataloader_workers_split_a_ranks_entries(runs: Path) -> None:
    stream = root_dataset(str(runs / "*.root"), "events", "ht", shard=(1, 2), stream=True,
                          batch_size=3, step_size=4)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    assert sorted(_ht(loader)) == list(range(TOTAL // 2, TOTAL))


def test_load_dataset_reads_a_root_source(runs: Path) -> None:
    config = {"branches": ["image"], "image_shape": [1, 2, 2], "val_fraction": 0.25}
    data = load_dataset(str(runs / "run_*.root"), config)
    (x, y), (x_val, y_val) = data["train"], data["val"]
    assert len(x) == len(y) == 18 and len(x_val) == len(y_val) == 5
    assert data["input_shape"] == (1, 2, 2)
    assert data["n_classes"] == 3 and x_val[0, 0, 0, 0] == 18
    half = load_dataset(str(runs / "run_*.root"), {**config, "shard": (0, 2)})
    assert len(half["train"][0]) == 9 and len(half["val"][0]) == 5
    with pytest.raises(ConfigError, match="needs config\\['branches'\\]"):
        load_dataset(str(runs / "run_*.root"), {})


def test_rntuples_read_the_same(tmp_path: Path) -> None:
    with uproot.recreate(tmp_path / "nt.root") as f:
        f["events"] = {"ht": np.arange(9, dtype=np.float64),  # a dict makes an RNTuple
                       "label": np.arange(9, dtype=np.int32) % 2}
    x, y = root_dataset(tmp_path / "nt.root", "events", "ht", "label", shard=(1, 3)).tensors
    assert x[:, 0].tolist() == [3.0, 4.0, 5.0] and y.tolist() == [1, 0, 1]
