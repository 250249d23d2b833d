"""Layout strings as a searched hyperparameter, on a real local Dask cluster."""

from __future__ import annotations

import pytest

import kale_ext as kale
from kale_ext.models import train_layout_classifier

LAYOUTS = ["FLAT,DENSE|32|RELU",
           "CONV|8|3|3|1|1|1|1|RELU,MAXPOOL|2|2|2|2,FLAT,DENSE|32|RELU,DENSE|10|LINEAR"]


@pytest.mark.slow
def test_grid_search_over_layouts() -> None:
    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    try:
        space = {"layout": kale.grid(LAYOUTS), "dataset": "digits", "epochs": 2,
                 "lr": 3e-3}
        search = kale.Search(train_layout_classifier, space, metric="val_acc", mode="max",
                             algorithm="grid", trials=2, cluster=cluster).start().wait(120)
        frame = search.results()
    finally:
        cluster.stop()
    assert sorted(frame["layout"]) == sorted(LAYOUTS)
    assert (frame["state"] == "completed").all()
    assert (frame["epoch"] == 2).all()
    assert (frame["val_acc"] > 0.5).all()  # ten classes: chance is 0.1
