"""A search store filled as a driver fills it, for the tests and benchmarks of big searches."""

from __future__ import annotations

import time
from pathlib import Path

from kale_ext import registry
from kale_ext.channel import Message
from kale_ext.search import Space, integer, loguniform
from kale_ext.store import Store
from kale_ext.trial import TrialState


def fill_search(folder: Path, name: str, trials: int, epochs: int = 20) -> Path:
    """Write and register search ``name``: one trial in ten running, the rest completed.

    Every trial reports ``epochs`` rows of ``loss`` and ``val_acc`` (the objective, to
    maximise); returns the store's path.
    """
    path = folder / f"{name}.kale.sqlite"
    with Store.open(path, states=TrialState, objective=("val_acc", "max")) as store:
        store.create_search({"name": name, "fn": "train", "metric": "val_acc", "mode": "max",
                             "algorithm": "random", "trials": trials,
                             "space": Space({"lr": loguniform(1e-4, 0.1),
                                             "layers": integer(1, 4)}).to_dict()})
        for n in range(trials):
            store.add_trial(n, {"lr": 1e-3 * (1 + n % 7), "layers": 1 + n % 4})
            store.transition(n, TrialState.RUNNING, "submitted", worker=f"w{n % 16}")
        for epoch in range(epochs):
            store.append([Message(n, 0, 0, epoch, "report", time.time(),
                                  {"epoch": epoch + 1, "loss": 1 / (epoch + 1 + n % 5),
                                   "val_acc": 1 - 1 / (epoch + 2 + n % 11)})
                          for n in range(trials)])
        for n in range(trials):
            if n % 10:
                store.transition(n, TrialState.COMPLETED, "done")
        store.set_search_state("running")
    registry.write("searches", name, {"name": name, "store": str(path), "cluster": None,
                                      "started": time.time()})
    return path
