"""Non-finite numbers (a NaN loss, an infinite gradient norm) leave the REST API as JSON
``null``: a browser's ``JSON.parse`` refuses bare ``NaN`` and ``Infinity``."""

from __future__ import annotations

import json
import math
import time

import pytest

from kale_ext import registry
from kale_ext.channel import Message
from kale_ext.store import Store

DEFINITION = {"name": "nan-loss", "fn": "train:train", "space": {"lr": {"kind": "uniform"}},
              "metric": "loss", "mode": "min", "algorithm": "random", "trials": 2}


def _strict(text: str):
    """Parse as ``JSON.parse`` does: NaN, Infinity and -Infinity are errors."""
    def refuse(word: str):
        raise ValueError(f"bare {word} in a JSON reply: JSON.parse would throw")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def nan_search(tmp_path):
    path = tmp_path / "nan-loss.kale.sqlite"
    with Store.open(path) as store:
        store.create_search(DEFINITION)
        store.add_trial(0, {"lr": 0.1})
        store.add_trial(1, {"lr": math.inf})
        store.append([
            Message(0, 0, 0, 0, "report", 1000.0, {"step": 1, "loss": 0.5, "gnorm": 1.0}),
            Message(0, 0, 0, 1, "report", 1001.0,
                    {"step": 2, "loss": math.nan, "gnorm": math.inf}),
            Message(1, 0, 0, 0, "report", 1002.0, {"step": 1, "loss": -math.inf}),
        ])
    registry.write("searches", "nan-loss", {"name": "nan-loss", "store": str(path),
                                            "cluster": None, "started": time.time()})
    return path


async def test_every_search_route_answers_strict_json_with_nulls(jp_fetch, nan_search):
    for path in [("searches",), ("searches", "nan-loss"), ("searches", "nan-loss", "trials"),
                 ("searches", "nan-loss", "trials", "0", "metrics"),
                 ("searches", "nan-loss", "trials", "1", "metrics"),
                 ("searches", "nan-loss", "metrics")]:
        response = await jp_fetch("kale", "api", *path)
        assert response.code == 200
        _strict(response.body.decode())  # raises on a bare NaN/Infinity
    trials = _strict((await jp_fetch("kale", "api", "searches", "nan-loss", "trials"))
                     .body.decode())
    assert trials[0]["last"]["loss"] is None and trials[0]["last"]["gnorm"] is None
    assert trials[1]["params"]["lr"] is None
    rows = _strict((await jp_fetch("kale", "api", "searches", "nan-loss", "trials", "0",
                                   "metrics")).body.decode())["rows"]
    assert [r["values"]["loss"] for r in rows] == [0.5, None]


def test_finite_json_turns_every_non_finite_number_into_null():
    import numpy as np

    from kale_ext.server._handlers import finite_json

    data = {"a": [math.nan, (math.inf, -math.inf)], "b": {"c": np.float64("nan")},
            "d": np.float32("inf"), "e": 1.5, "f": 3, "g": True, "h": None, "i": "NaN",
            "j": np.int64(7), "k": {math.nan: 1, (1, 2): 2}}
    assert _strict(finite_json(data)) == {"a": [None, [None, None]], "b": {"c": None},
                                          "d": None, "e": 1.5, "f": 3, "g": True,
                                          "h": None, "i": "NaN", "j": 7,
                                          "k": {"nan": 1, "(1, 2)": 2}}
