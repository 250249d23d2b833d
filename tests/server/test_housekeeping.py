"""What the sidebar tidies: forgetting searches (files kept or deleted), stores that
no longer exist (listed once), failed cluster starts (listed until dismissed)."""

from __future__ import annotations

import time

import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext._errors import ConfigError
from kale_ext.search import channel_file
from kale_ext.store import Store


def _search(tmp_path, name: str, *, checkpoints: bool = False):
    """A stored search registered as a kernel's Search registers it."""
    store_path = tmp_path / f"{name}.kale.sqlite"
    with Store.open(store_path) as store:
        store.create_search({"name": name, "metric": "acc", "mode": "max", "trials": 1})
        store.add_trial(0, {"lr": 0.1})
        if checkpoints:
            beside = store_path.with_name(store_path.name + ".checkpoints") / "trial-0"
            elsewhere = tmp_path / "scratch" / f"{name}-1234" / "trial-0"
            for folder in (beside, elsewhere):
                folder.mkdir(parents=True)
                (folder / "epoch-1.pt").write_bytes(b"weights")
            store.add_checkpoint(0, 1, str(elsewhere / "epoch-1.pt"))
    registry.write("searches", name, {"name": name, "store": str(store_path),
                                      "cluster": None, "started": time.time()})
    return store_path


async def test_forgetting_a_search_keeps_its_files_unless_asked(api, tmp_path):
    kept = _search(tmp_path, "kept")
    status, answer = await api("DELETE", "searches", "kept")
    assert status == 200 and answer["deleted"] == [] and str(kept) in answer["kept"]
    assert kept.exists() and registry.read("searches", "kept") is None
    assert (await api("GET", "searches"))[1] == []

    gone = _search(tmp_path, "gone", checkpoints=True)
    status, answer = await api("DELETE", "searches", "gone", params={"delete_files": "1"})
    assert status == 200, answer
    assert not gone.exists()
    assert not gone.with_name(gone.name + ".checkpoints").exists()
    assert not (tmp_path / "scratch" / "gone-1234").exists()
    assert (tmp_path / "scratch").exists()  # only the search's own folder goes
    assert "deleted 3" in answer["message"]


async def test_a_running_search_is_not_forgotten(api, tmp_path):
    _search(tmp_path, "live")
    channel_file("live").parent.mkdir(parents=True, exist_ok=True)
    channel_file("live").write_text("{}")
    try:
        status, answer = await api("DELETE", "searches", "live")
        assert status == 409 and "still running" in answer["message"]
        assert registry.read("searches", "live") is not None
    finally:
        channel_file("live").unlink()


async def test_a_search_whose_store_is_gone_is_listed_once(api, tmp_path):
    _search(tmp_path, "present")
    _search(tmp_path, "deleted").unlink()
    status, listed = await api("GET", "searches")
    states = {s["name"]: s["state"] for s in listed}
    assert status == 200 and states["present"] != states["deleted"]
    assert states["deleted"].startswith("missing: its store ")
    status, listed = await api("GET", "searches")
    assert [s["name"] for s in listed] == ["present"]


async def test_failed_cluster_starts_are_listed_until_dismissed(api):
    with pytest.raises(ConfigError, match="queue"):
        kale.start_cluster("local", workers=1, queue="debug")  # no queue on a local cluster
    status, failed = await api("GET", "failed-starts")
    assert status == 200 and len(failed) == 1
    [record] = failed
    assert record["kind"] == "local" and record["backend"] == "dask"
    assert "queue" in record["error"] and record["type"] == "ConfigError"
    status, answer = await api("DELETE", "failed-starts", record["id"])
    assert status == 200 and answer["message"] == "dismissed"
    assert (await api("GET", "failed-starts"))[1] == []
    status, answer = await api("DELETE", "failed-starts", record["id"])
    assert status == 404
