"""Trial functions for the widget tests; shipped to workers by value (see conftest)."""

from __future__ import annotations

import time

import kale_ext as kale


def slow_curve(config):
    """Reports loss/acc every ``sleep`` seconds for ``epochs`` epochs."""
    for epoch in range(1, config.get("epochs", 40) + 1):
        time.sleep(config.get("sleep", 0.1))
        kale.report(epoch=epoch, loss=config["lr"] / epoch, val_loss=config["lr"] / epoch + 0.1,
                    acc=1 - 1 / (epoch + 1), val_acc=(1 - 1 / (epoch + 1)) * config["lr"])
