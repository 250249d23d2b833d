"""``kale.cached``: data loaded once per worker and kept across runs and trials."""

from __future__ import annotations

import os
from collections import Counter

import pytest

import kale_ext as kale
from kale_ext import ConfigError
from kale_ext.training import _cache
from tests.training import trainables


@pytest.fixture(scope="module")
def dask_cluster(module_state):
    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    yield cluster
    cluster.stop()


def _calls(path) -> Counter[str]:
    if not os.path.exists(path):
        return Counter()
    with open(path) as f:
        return Counter(line.split()[0] for line in f)


def _run(cluster, **config):
    run = kale.train_distributed(trainables.cached_data, cluster, workers=2, config=config)
    values = run.wait(180)
    assert run.state == "completed"
    assert [run._group.outcomes[r]["warm"] for r in (0, 1)] == [True, True]
    return values


def test_a_warm_rerun_does_not_load_again_and_keys_stay_apart(dask_cluster, tmp_path):
    calls = str(tmp_path / "calls")
    want = {"a": ("a", [1.0] * 3), "bb": ("bb", [2.0] * 3)}
    first = _run(dask_cluster, keys=["a", "bb"], calls=calls)
    assert first == [want, want]
    assert _calls(calls) == {"a": 2, "bb": 2}  # once on each of the two workers
    # The second run mutates its copies: the third must still get the loaded values.
    second = _run(dask_cluster, keys=["a", "bb"], calls=calls, mutate=True)
    assert second == [want, want]
    assert _calls(calls) == {"a": 2, "bb": 2}, "a warm run called the loader again"
    third = _run(dask_cluster, keys=["bb", "a", "ccc"], calls=calls)
    assert third == [{**want, "ccc": ("ccc", [3.0] * 3)}] * 2
    assert _calls(calls) == {"a": 2, "bb": 2, "ccc": 2}  # only the new key was loaded


def test_search_trials_on_a_worker_share_what_they_loaded(dask_cluster, tmp_path):
    calls = str(tmp_path / "calls")
    search = kale.Search(trainables.cached_trial,
                         {"x": kale.grid([1.0, 2.0, 3.0, 4.0]),
                          "key": kale.grid(["one", "two"]),
                          "calls": calls},
                         metric="loss", mode="min", algorithm="grid", trials=8,
                         cluster=dask_cluster).start()
    search.wait(180)
    frame = search.results()
    assert set(frame["state"]) == {"completed"}, frame
    assert list(frame["seen"]) == list(frame["key"])  # no key got another's value
    counts = _calls(calls)
    # Each key loaded at most once per worker process: 8 trials, at most 2 x 2 loads.
    assert set(counts) == {"one", "two"} and max(counts.values()) <= 2, counts


def test_in_one_process_the_loader_runs_once_per_key(monkeypatch):
    monkeypatch.delenv(_cache.CACHE_DIR_ENV, raising=False)
    calls: list[str] = []

    def loader(key):
        calls.append(key)
        return [key]

    key_a, key_b = f"test-a-{os.getpid()}", f"test-b-{os.getpid()}"
    a = kale.cached(key_a, lambda: loader(key_a))
    assert kale.cached(key_a, lambda: loader("never")) is a
    b = kale.cached(key_b, lambda: loader(key_b))
    assert (a, b, calls) == ([key_a], [key_b], [key_a, key_b])


def test_handed_over_values_reach_the_zygote(monkeypatch, tmp_path):
    monkeypatch.setenv(_cache.CACHE_DIR_ENV, str(tmp_path))
    key = f"test-hand-over-{os.getpid()}"
    value = kale.cached(key, lambda: {"rows": [1, 2, 3]})
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".pkl")
    _cache._values.pop(key)  # as in the zygote, which never loaded it itself
    _cache.absorb(str(tmp_path))
    assert os.listdir(tmp_path) == []
    assert kale.cached(key, lambda: pytest.fail("loaded again")) == value


@pytest.mark.parametrize("key, loader, rule", [
    ("", list, "non-empty string"), (3, list, "non-empty string"),
    ("k", None, "loader must be a function"),
])
def test_bad_arguments_are_named(key, loader, rule):
    with pytest.raises(ConfigError, match=rule) as info:
        kale.cached(key, loader)
    assert repr(key if rule != "loader must be a function" else loader) in str(info.value)


def test_values_that_cannot_be_kept_are_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(_cache.CACHE_DIR_ENV, str(tmp_path))
    import threading

    with pytest.raises(ConfigError, match="cannot be kept for later runs"):
        kale.cached(f"lock-{os.getpid()}", threading.Lock)

    class FakeCudaTensor:  # a mock for a GPU tensor: this machine need not have a GPU
        is_cuda = True
        device = "cuda:0"

    with pytest.raises(ConfigError, match=r"tensor on cuda:0.*to the CPU"):
        kale.cached(f"cuda-{os.getpid()}", lambda: [FakeCudaTensor()])
    assert os.listdir(tmp_path) == []
