"""Fixtures for the widget tests: stores written through the real store API, a local
Dask cluster per module, and a wait helper."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import kale_ext as kale
from kale_ext.channel import Message
from kale_ext.search import Space, TrialState
from kale_ext.store import Store
from tests.widgets import trainables

cloudpickle.register_pickle_by_value(trainables)

SPACE = Space({"lr": kale.loguniform(1e-3, 1.0), "optimizer": kale.choice(["adam", "sgd"]),
               "layers": kale.int(1, 4)})


class StoreWriter:
    """Writes a search into a store the way the driver does (real SQLite, real API)."""

    def __init__(self, path: Path, *, trials: int = 10, metric: str = "val_acc",
                 space: Space = SPACE) -> None:
        self.path = path
        self.store = Store.open(path)
        self.store.create_search({"name": path.name.split(".")[0], "metric": metric,
                                  "mode": "max", "space": space.to_dict(), "trials": trials})
        self.seq: dict[tuple[int, int, int], int] = {}

    def add(self, number: int, params: dict[str, Any], worker: str = "w0") -> None:
        self.store.add_trial(number, params)
        self.store.transition(number, TrialState.RUNNING, "started", worker=worker)

    def report(self, number: int, epoch: int, *, attempt: int = 0, rank: int = 0,
               **values: Any) -> None:
        key = (number, attempt, rank)
        seq = self.seq.get(key, -1) + 1
        self.seq[key] = seq
        self.store.append([Message(number, attempt, rank, seq, "report", time.time(),
                                   {"epoch": epoch, **values})])

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def writer(tmp_path):
    w = StoreWriter(tmp_path / "stored.kale.sqlite")
    yield w
    w.close()


@pytest.fixture(scope="module")
def module_state(tmp_path_factory):
    import dask.config

    state = tmp_path_factory.mktemp("kale-widgets-state")
    with dask.config.set({"kale.state-dir": str(state)}):
        yield state


@pytest.fixture(scope="module")
def dask_cluster(module_state):
    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    yield cluster
    cluster.stop()
