"""Trial functions for the search tests. Shipped to workers by value (see conftest)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import kale_ext as kale


def quadratic(config):
    """Score peaks at x = 0.3; reports every epoch; finishes in well under a second."""
    x = config["x"]
    for epoch in range(1, config.get("epochs", 9) + 1):
        kale.report(epoch=epoch, score=-((x - 0.3) ** 2) + 0.01 * epoch, loss=abs(x - 0.3))
        time.sleep(config.get("sleep", 0.0))
    return {"x": x}


def curve(config):
    """A planted learning curve: quality q sets the level at every epoch."""
    q = config["q"]
    for epoch in range(1, config["epochs"] + 1):
        kale.report(epoch=epoch, acc=q * (1 - 0.5 / epoch))
        time.sleep(config.get("sleep", 0.0))


def slow_checkpointed(config):
    """Counts epochs slowly, checkpointing each; logs every acknowledged report.

    The log lines (trial, attempt-free epoch, pid) are written after ``report`` returns,
    i.e. after the row is durable in the store, so a test can check none was lost.
    """
    log = Path(config["log"])
    state = kale.load_checkpoint()
    start = state["epoch"] + 1 if state else 1
    (Path(config["pids"]) / f"{os.getpid()}").write_text(str(config.get("tag", "")))
    for epoch in range(start, config["epochs"] + 1):
        time.sleep(config["sleep"])
        kale.save_checkpoint({"epoch": epoch}, epoch)
        kale.report(epoch=epoch, acc=config["q"] * epoch, resumed_from=start)
        with log.open("a") as f:
            f.write(json.dumps({"tag": config.get("tag"), "epoch": epoch}) + "\n")
    return {"epochs": config["epochs"]}


def broken(config):
    kale.report(epoch=1, acc=0.1)
    raise ValueError(f"bad value x={config['x']}")
