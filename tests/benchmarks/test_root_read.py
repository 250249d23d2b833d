"""Reading ROOT files per rank: a RootStream's rows/s against plain ``uproot.iterate``.

Eight files of 25,000 entries (TTrees of a 64-value image and a label) are read once by
``uproot.iterate`` over all files (NumPy arrays, no batching) and once by each of two
ranks' ``root_dataset(..., shard=(rank, 2), stream=True)`` (its half as float32 torch
batches of 1024), one after the other, with the same step size. Printed: rows/s of
each and their ratio, per rank. Target, asserted: each rank's stream at >= 0.5 of plain
``uproot.iterate``'s rows/s (making torch batches at most halves the rate).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import uproot

from kale_ext.models import root_dataset
from tests.benchmarks.targets import Targets

pytestmark = pytest.mark.benchmark

FILES, ENTRIES, WIDTH, STEP = 8, 25_000, 64, 20_000


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("bench-root")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(FILES):
        path = folder / f"run_{i}.root"
        with uproot.recreate(path) as f:
            f.mktree("events", {"image": (np.float32, (WIDTH,)), "label": np.int32})
            f["events"].extend({"image": rng.random((ENTRIES, WIDTH), dtype=np.float32),
                                "label": rng.integers(0, 2, ENTRIES).astype(np.int32)})
        paths.append(path)
    return paths


def _plain(paths: list[Path]) -> float:
    start, rows = time.perf_counter(), 0
    for arrays in uproot.iterate([f"{p}:events" for p in paths], ["image", "label"],
                                 step_size=STEP, library="np"):
        rows += len(arrays["label"])
    assert rows == FILES * ENTRIES
    return rows / (time.perf_counter() - start)


def _rank(paths: list[Path], rank: int) -> float:
    start, rows = time.perf_counter(), 0
    stream = root_dataset([str(p) for p in paths], "events", "image", "label",
                          shard=(rank, 2), stream=True, batch_size=1024, step_size=STEP)
    for x, _ in stream:
        rows += len(x)
    assert rows == FILES * ENTRIES // 2
    return rows / (time.perf_counter() - start)


def test_rows_per_second_per_rank_against_plain_uproot_iterate(files: list[Path]) -> None:
    _plain(files)  # warm the page cache and uproot's imports
    plain = max(_plain(files) for _ in range(3))
    ranks = [max(_rank(files, rank) for _ in range(3)) for rank in (0, 1)]
    print(f"\nplain uproot.iterate, {FILES} files x {ENTRIES} entries: {plain:,.0f} rows/s")
    targets = Targets()
    for rank, rate in enumerate(ranks):
        targets.ratio(f"rank {rank} of 2, RootStream rows/s (its half), to plain", rate, plain,
                      at_least=0.5)
    targets.assert_met()
