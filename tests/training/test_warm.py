"""Warm ranks: runs on workers that ran one before fork from a zygote that imported torch.

A warm run must compute exactly what a cold one does: the same seeded training gives
the same weights whether its ranks are new interpreters (``warm=False``), the first
forks of a new zygote, or later forks of it, and nothing one run changes in its
processes is seen by the next.
"""

from __future__ import annotations

import pytest
import torch

import kale_ext as kale
from kale_ext import ConfigError
from tests.training import trainables


@pytest.fixture(scope="module")
def dask_cluster(module_state):
    cluster = kale.start_cluster(kind="local", backend="dask", workers=2)
    yield cluster
    cluster.stop()


def _run(cluster, fn, *, warm=True, **config):
    run = kale.train_distributed(fn, cluster, workers=2, config=config, warm=warm)
    values = run.wait(180)
    assert run.state == "completed"
    forked = [run._group.outcomes[r]["warm"] for r in (0, 1)]
    return values, forked, run


def test_a_warm_rerun_gives_the_weights_of_a_cold_run(dask_cluster):
    config = {"seed": 7, "steps": 5}
    cold, forked, _ = _run(dask_cluster, trainables.seeded_training, warm=False, **config)
    assert forked == [False, False]
    first, forked, _ = _run(dask_cluster, trainables.seeded_training, **config)
    assert forked == [True, True]
    again, forked, run = _run(dask_cluster, trainables.seeded_training, **config)
    assert forked == [True, True]
    assert run.timings["imports"] < 1.0, run.timings  # torch was imported by the zygote
    for values in (first, again):
        for rank in (0, 1):
            for got, want in zip(values[rank], cold[0], strict=True):
                assert torch.equal(got, want), (got, want)
    other, _, _ = _run(dask_cluster, trainables.seeded_training, seed=8, steps=5)
    assert not torch.equal(other[0][0], cold[0][0])  # the seed matters: the test can fail


def test_nothing_of_a_run_reaches_the_next(dask_cluster):
    first, forked, _ = _run(dask_cluster, trainables.leaks)
    second, forked_again, _ = _run(dask_cluster, trainables.leaks)
    assert forked == forked_again == [True, True]
    for seen in first + second:
        assert seen["global"] is None and seen["env"] is None, seen
        assert seen["grad"] is True
    assert {s["threads"] for s in first} == {s["threads"] for s in second}
    # Unseeded generators are seeded anew in every process, as in a new interpreter.
    for name in ("torch", "numpy", "random"):
        draws = [s[name] for s in first + second]
        assert len(set(draws)) == len(draws), (name, draws)


def test_warm_must_be_a_bool(dask_cluster):
    with pytest.raises(ConfigError, match=r"warm must be True .* got warm='yes'"):
        kale.train_distributed(trainables.leaks, dask_cluster, workers=2, warm="yes")
