"""`kale search ...` against a live search on a local Dask cluster."""

from __future__ import annotations

import json

import pytest

import kale_ext as kale
from kale_ext.cli import main
from kale_ext.search import TrialState
from tests.conftest import wait_for
from tests.search import trainables


@pytest.mark.slow
def test_search_list_show_and_control(capsys):
    assert main(["search", "list"]) == 0
    assert "no searches" in capsys.readouterr().out
    with kale.start_cluster(kind="local", backend="dask", workers=2) as cluster:
        search = kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1), "epochs": 400,
                                                    "sleep": 0.05},
                             metric="score", trials=2, cluster=cluster, name="cli-search")
        search.start()
        try:
            wait_for(lambda: len(search.runs) == 2 and all(r.last_step >= 1
                                                           for r in search.runs.values()),
                     what="two running trials")
            assert main(["search", "list", "--json"]) == 0
            [entry] = json.loads(capsys.readouterr().out)
            assert entry["name"] == "cli-search" and entry["alive"] is True

            assert main(["search", "list"]) == 0
            out = capsys.readouterr().out
            assert "cli-search" in out and "0/2 (2 running)" in out

            assert main(["search", "show", "cli-search"]) == 0
            out = capsys.readouterr().out
            assert "score (max), algorithm random" in out and "x=" in out

            assert main(["search", "stop", "cli-search", "--trial", "0"]) == 0
            assert capsys.readouterr().out.strip() == "stop trial 0: done"
            wait_for(lambda: search.runs[0].state is TrialState.STOPPED, what="trial 0 stopped")

            assert main(["search", "resume", "cli-search", "-t", "0"]) == 1
            assert "not paused" in capsys.readouterr().err

            assert main(["search", "restart", "cli-search", "-t", "1", "-o", "x=7"]) == 1
            assert "x" in capsys.readouterr().err  # outside the space [0, 1]

            assert main(["search", "stop", "cli-search"]) == 0
            search.wait(60)
        finally:
            if search.running:
                search.stop()
                search.wait(60)
    assert main(["search", "pause", "cli-search"]) == 1
    assert "no running driver" in capsys.readouterr().err
    assert main(["search", "show", "nope"]) == 1
    assert "No search 'nope'" in capsys.readouterr().err


def test_search_show_takes_a_name_or_a_store_path(tmp_path, capsys):
    from kale_ext import registry
    from kale_ext.store import Store

    store_path = tmp_path / "runs" / "demo-1.kale.sqlite"
    store_path.parent.mkdir()
    with Store.open(store_path) as store:
        store.create_search({"name": "demo-1", "metric": "val_acc", "mode": "max",
                             "trials": 1, "algorithm": "tpe"})
        store.add_trial(0, {"lr": 0.000118})
    # The path (as the demo's hint prints it) works whether or not the search is registered.
    assert main(["search", "show", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo-1: ") and "val_acc (max), algorithm tpe" in out
    assert "lr=1.18e-4" in out or "lr=0.000118" in out
    registry.write("searches", "demo-1", {"name": "demo-1", "store": str(store_path)})
    assert main(["search", "show", "demo-1"]) == 0
    assert capsys.readouterr().out == out
    assert main(["search", "show", str(tmp_path / "gone.kale.sqlite")]) == 1
    assert "No search store at" in capsys.readouterr().err
