"""10,000 trials in one search: the sidebar's, the CLI's and the panel's reads stay quick.

A store is filled as a driver would fill it (trials, transitions, 20 metric rows a
trial), once with 100 trials and once with 10,000, and registered. Then each read the
sidebar, ``kale search show`` and the panel make is timed (median of a few runs) on
both. Target, asserted as ratios of the large search to the small one measured side
by side: what a user waits for does not grow with the number of trials beyond what
it shows (paged trial lists, counts and the best trial in SQL); the panel, which
holds every trial, stays within a linear share.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext.channel import Message
from kale_ext.search import TrialState
from tests.benchmarks.targets import Targets

pytestmark = pytest.mark.benchmark

SMALL, LARGE = 100, int(os.environ.get("KALE_BENCH_TRIALS", "10000"))
EPOCHS = 20
RUNS = 5


def _noop(config: dict[str, Any]) -> None:
    return None


def _fill(tmp_path: Path, trials: int) -> str:
    """Write a search of ``trials`` trials, 90 % completed, the rest running; return its name."""
    name = f"many-{trials}"
    search = kale.Search(_noop, {"lr": kale.loguniform(1e-4, 1e-1), "layers": kale.int(1, 4)},
                         metric="val_acc", trials=trials, store=tmp_path / f"{name}.sqlite",
                         name=name)
    store = search.store
    for n in range(trials):
        store.add_trial(n, {"lr": 1e-3 * (1 + n % 7), "layers": 1 + n % 4})
        store.transition(n, TrialState.RUNNING, "submitted", worker=f"w{n % 16}")
    for epoch in range(EPOCHS):
        store.append([Message(n, 0, 0, epoch, "report", time.time(),
                              {"epoch": epoch + 1, "loss": 1 / (epoch + 1 + n % 5),
                               "val_acc": 1 - 1 / (epoch + 2 + n % 11)})
                      for n in range(trials)])
    for n in range(trials):
        if n % 10:
            store.transition(n, TrialState.COMPLETED, "done")
    store.set_search_state("running")
    store.close()
    registry.write("searches", name, {"name": name, "store": str(search.store_path),
                                      "cluster": None, "started": time.time()})
    return name


def _median_s(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _reads(name: str) -> dict[str, float]:
    from kale_ext.server import KaleManager

    manager = KaleManager()
    kale_cli = str(Path(sys.executable).parent / "kale")

    def show() -> None:
        subprocess.run([kale_cli, "search", "show", name], check=True, capture_output=True)

    def panel() -> None:
        import kale_ext.widgets

        kale_ext.widgets.panel(registry.read("searches", name)["store"]).close()

    return {
        "sidebar: searches list": _median_s(manager.searches),
        "sidebar: one search": _median_s(lambda: manager.search(name)),
        "sidebar: trials page": _median_s(lambda: manager.trials(name)),
        "sidebar: sparklines": _median_s(lambda: manager.search_metrics(name)),
        "kale search show": _median_s(show),
        "panel: open": _median_s(panel),
    }


def test_ten_thousand_trials_stay_responsive(tmp_path: Path) -> None:
    pytest.importorskip("ipydatagrid", reason="the widgets extra is not installed")
    small, large = _reads(_fill(tmp_path, SMALL)), _reads(_fill(tmp_path, LARGE))
    print(f"\nreads of a search with {SMALL} and with {LARGE} trials ({EPOCHS} rows each), "
          f"median of {RUNS}:")
    targets = Targets()
    for what in small:
        print(f"  {what:24s} {small[what] * 1e3:8.1f} ms  {large[what] * 1e3:8.1f} ms")
        bound = 25.0 if what == "panel: open" else 3.0  # 100x the trials
        targets.ratio(f"{what}, {LARGE} / {SMALL} trials", large[what], small[what],
                      at_most=bound)
    targets.assert_met()
