"""Trial functions for the export tests. Shipped to workers by value (see conftest)."""

from __future__ import annotations

import time

import kale_ext as kale
from kale_ext.trial import current

# Run one at a time under ASHA(max_t=6, grace_period=1, reduction_factor=3), trials 0..5
# take these paths: 0 and 1 complete (1 is the best), 2 passes the first rung and fails,
# 3 and 4 fall below the first rung, 5 passes it and runs slowly until the test stops it
# (below trial 1's best however long it runs before the stop).
QUALITY = {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.1, 4: 0.2, 5: 0.65}
BEST = 1
FAILS = 2
STOPPED = 5


def planted(config):
    """Score ``q * (1 - 0.5 / epoch)`` with q set by the trial's number; checkpoints."""
    number = current().trial
    for epoch in range(1, config["epochs"] + 1):
        if number == FAILS and epoch == 2:
            raise ValueError(f"planted failure of trial {number}")
        score = QUALITY[number] * (1 - 0.5 / epoch)
        kale.report(epoch=epoch, score=score, loss=1 - score, phase="train")
        if epoch % 2 == 0:
            kale.save_checkpoint({"epoch": epoch}, epoch)
        if number == STOPPED:
            time.sleep(0.3)
    return {"epochs": config["epochs"]}


def ranks(config):
    """Every rank of a distributed run reports three epochs of its own loss."""
    for epoch in range(1, 4):
        kale.report(epoch=epoch, loss=1.0 / (epoch + kale.rank()))
    return kale.rank()
