"""500 trials x 50 epochs, and 1,000 concurrent trials x 30, streamed into an open search panel.

Prints the update latency (a row stored to the row applied in the panel's widget
models), the CPU the panel's thread spends, and how responsive the kernel's own
thread stays, against a baseline run of the same writes with no panel open.
Target, asserted: the latency's p95 at most twice the panel's update interval (a row
cannot show before the next update; 0.2 s by default, 5 Hz), a ratio rather than an
absolute time.
Run with ``make bench`` (or ``pytest tests/benchmarks -m benchmark -s``).
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

import kale_ext as kale
from kale_ext.channel import Message
from kale_ext.search import TrialState
from tests.benchmarks.targets import Targets

EPOCH_EVERY = 0.1  # every trial reports an epoch this often: 5,000 or 10,000 rows/s


def _noop(config):
    return None


def _stream(store, marks, trials, epochs):
    """Write one epoch of every trial per batch, as the driver would, every EPOCH_EVERY s."""
    for n in range(trials):
        store.add_trial(n, {"lr": 1e-3 * (1 + n % 7), "layers": 1 + n % 4})
        store.transition(n, TrialState.RUNNING, "benchmark", worker=f"w{n % 16}")
    start = time.monotonic()
    for epoch in range(1, epochs + 1):
        now = time.time()
        store.append([Message(n, 0, 0, epoch - 1, "report", now,
                              {"epoch": epoch, "loss": 1 / (epoch + n % 5),
                               "val_loss": 1.1 / (epoch + n % 5), "acc": 1 - 1 / (epoch + 1),
                               "val_acc": 1 - 1.2 / (epoch + 1)})
                      for n in range(trials)])
        marks.append((store.metrics(number=trials - 1)[-1].rowid, now))
        time.sleep(max(0.0, start + epoch * EPOCH_EVERY - time.monotonic()))


def _run(tmp_path, name, with_panel, trials, epochs):
    search = kale.Search(_noop, {"lr": kale.loguniform(1e-4, 1e-1), "layers": kale.int(1, 4)},
                         metric="val_acc", trials=trials, store=tmp_path / f"{name}.sqlite",
                         name=name)
    panel = kale.widgets.panel(search.store_path) if with_panel else None
    marks: list[tuple[int, float]] = []
    writer = threading.Thread(target=_stream, args=(search.store, marks, trials, epochs))
    lags = []
    cpu0 = time.process_time()
    writer.start()
    while writer.is_alive():  # the kernel's thread: how late do its short sleeps wake?
        t = time.perf_counter()
        time.sleep(0.005)
        lags.append(time.perf_counter() - t - 0.005)
    writer.join()
    latencies = []
    if panel is not None:
        deadline = time.time() + 10
        while time.time() < deadline and (not panel.applied
                                          or panel.applied[-1][0] < marks[-1][0]):
            time.sleep(0.05)
        applied = list(panel.applied)
        for rowid, written in marks:
            seen = next((t for r, t in applied if r >= rowid), None)
            assert seen is not None, "a stored row never reached the panel"
            latencies.append(seen - written)
        assert len(panel.book.frame()) == trials
    cpu = time.process_time() - cpu0
    ui_cpu = panel.ui_cpu_seconds if panel is not None else 0.0
    interval = panel.updater.interval if panel is not None else 0.0
    if panel is not None:
        panel.close()
    search.store.close()
    lags.sort()
    return {"cpu": cpu, "ui_cpu": ui_cpu, "lag_p99": lags[int(len(lags) * 0.99)],
            "lag_max": lags[-1], "latency": latencies, "interval": interval}


@pytest.mark.benchmark
@pytest.mark.parametrize(("trials", "epochs"), [(500, 50), (1000, 30)])
def test_panel_keeps_up(tmp_path, trials, epochs):
    pytest.importorskip("ipydatagrid", reason="the widgets extra is not installed")
    import kale_ext.widgets  # noqa: F401 - kale.widgets below

    base = _run(tmp_path, "baseline", False, trials, epochs)
    live = _run(tmp_path, "panel", True, trials, epochs)
    lat = sorted(live["latency"])
    print(f"\n{trials} trials x {epochs} epochs, {trials / EPOCH_EVERY:.0f} rows/s into the store")
    print(f"update latency (row stored -> row in the panel): median "
          f"{statistics.median(lat) * 1e3:.0f} ms, p95 {lat[int(len(lat) * 0.95)] * 1e3:.0f} ms,"
          f" max {lat[-1] * 1e3:.0f} ms (panel updates every {live['interval']:.2f} s)")
    print(f"process CPU: no panel {base['cpu']:.2f} s, panel open {live['cpu']:.2f} s, "
          f"ratio {live['cpu'] / base['cpu']:.2f}; the panel's thread {live['ui_cpu']:.2f} s")
    print(f"kernel thread wake-up lag p99: no panel {base['lag_p99'] * 1e3:.1f} ms, "
          f"panel open {live['lag_p99'] * 1e3:.1f} ms (max {live['lag_max'] * 1e3:.1f} ms)")
    assert len(live["latency"]) == epochs
    targets = Targets()
    targets.ratio("update latency p95 / the panel's update interval",
                  lat[int(len(lat) * 0.95)], live["interval"], at_most=2.0)
    targets.assert_met()
