"""Idle timeout: a cluster with no client and no task stops itself; one with a task,
a client that holds on, or a pin does not."""

from __future__ import annotations

import time

import dask.config
import pytest

import kale_ext as kale
from kale_ext import registry
from kale_ext._errors import ConfigError
from kale_ext.clusters._idle import IdleClock, check_interval, timeout_seconds
from tests.conftest import wait_for

# -- the policy, with fake observations --------------------------------------------------


def test_a_clock_runs_out_with_no_client_and_no_task():
    clock = IdleClock(timeout=60)
    clock.observe(0, clients=[], busy=False)
    assert clock.idle_for(30) == 30 and clock.left(30) == 30 and not clock.expired(30)
    clock.observe(59, clients=[], busy=False)
    assert clock.expired(60)
    assert clock.to_dict(60) == {"timeout": 60, "idle_for": 60, "left": 0}


def test_a_task_or_a_client_that_holds_on_resets_the_clock():
    clock = IdleClock(timeout=60)
    clock.observe(0, clients=["Client-starter"], busy=False)
    clock.observe(10, clients=[], busy=False)  # it left
    clock.observe(50, clients=[], busy=True)  # a task
    assert clock.idle_for(55) is None and clock.left(55) is None
    clock.observe(60, clients=[], busy=False)
    assert clock.left(100) == 20
    clock.observe(100, clients=["Client-a"], busy=False)  # seen once: a status query
    assert clock.left(100) == 20
    clock.observe(110, clients=["Client-a"], busy=False)  # seen twice: holds the cluster
    assert clock.idle_for(200) is None and not clock.expired(10_000)


def test_the_client_that_started_a_cluster_holds_it_from_the_first_look():
    clock = IdleClock(timeout=10)
    clock.observe(0, clients=["Client-starter"], busy=False)
    assert clock.idle_for(5) is None
    clock.observe(5, clients=[], busy=False)  # it left
    assert clock.left(10) == 5


def test_passing_status_queries_never_keep_a_cluster_alive():
    clock = IdleClock(timeout=10)
    clock.observe(0, clients=[], busy=False)
    clock.observe(1, clients=["Client-starter"], busy=False)  # the first client counts
    for t in range(2, 13):
        clock.observe(t, clients=[f"Client-{t}"], busy=False)  # a new one each look
    assert clock.expired(12)


def test_a_cluster_started_and_left_before_any_client_came_runs_out():
    clock = IdleClock(timeout=10)
    for t in range(11):
        clock.observe(t, clients=[], busy=False)
    assert clock.expired(10)


def test_a_clock_without_timeout_counts_but_never_expires():
    clock = IdleClock(timeout=None)
    clock.observe(0, clients=[], busy=False)
    assert clock.idle_for(1e6) == 1e6 and clock.left(1e6) is None and not clock.expired(1e6)


def test_the_timeout_comes_from_options_then_config_and_a_pin_turns_it_off():
    assert timeout_seconds({"idle_timeout": 90}) == 90
    assert timeout_seconds({"idle_timeout": "30 minutes"}) == 1800
    assert timeout_seconds({"idle_timeout": "1h", "pin": True}) is None
    assert timeout_seconds({"idle_timeout": 0}) is None
    assert timeout_seconds({}) == 3600  # kale.yaml's default
    with dask.config.set({"kale.idle-timeout": None}):
        assert timeout_seconds({}) is None
    with pytest.raises(ConfigError, match="idle_timeout='soon'"):
        timeout_seconds({"idle_timeout": "soon"})
    assert check_interval(3600) == 30 and check_interval(2) == 0.25


# -- a real local Dask cluster, with a short timeout -----------------------------------


def _gone(cluster_id: str) -> bool:
    return registry.read("clusters", cluster_id) is None


def test_a_cluster_with_no_client_and_no_task_stops_after_its_timeout():
    cluster = kale.start_cluster("local", workers=1, idle_timeout=2)
    cid = cluster.id
    try:
        time.sleep(1)
        status = cluster.status()
        assert status.idle is not None and status.idle["timeout"] == 2
        assert status.idle["idle_for"] is None  # this process's client holds it
        time.sleep(2.5)
        assert not _gone(cid)  # still held past its timeout
        cluster.disconnect()
        wait_for(lambda: _gone(cid), timeout=30, what="the idle cluster to stop itself")
    finally:
        if not _gone(cid):
            kale.stop(cid)


def test_a_cluster_running_a_task_is_not_stopped_and_a_pinned_one_never():
    from distributed import fire_and_forget

    busy = kale.start_cluster("local", workers=1, idle_timeout=2)
    pinned = kale.start_cluster("local", workers=1, idle_timeout=2, pin=True)
    ids = busy.id, pinned.id
    try:
        fire_and_forget(busy.client.submit(time.sleep, 8, pure=False))
        time.sleep(0.5)
        busy.disconnect()
        pinned.disconnect()
        time.sleep(5)  # more than twice the timeout, the task still running
        assert not _gone(busy.id) and not _gone(pinned.id)
        [shown] = [s for s in kale.clusters() if s.id == pinned.id]
        assert shown.idle is not None and shown.idle["timeout"] is None
        assert shown.idle["idle_for"] is not None and shown.idle["left"] is None
        # Once its task is done, the busy one runs out of time too.
        wait_for(lambda: _gone(busy.id), timeout=30, what="the cluster to stop after its task")
        assert not _gone(pinned.id)
    finally:
        for cid in ids:
            if not _gone(cid):
                kale.stop(cid)


def test_an_ipyparallel_cluster_whose_starter_exited_stops_when_idle():
    from tests.conftest import run_python

    out = run_python("import kale_ext as kale\n"
                     "c = kale.start_cluster('local', backend='ipyparallel', workers=1,"
                     " idle_timeout=2)\n"
                     "print('ID', c.id)\n")
    cid = out.split("ID ")[1].split()[0]
    try:
        assert not _gone(cid)
        wait_for(lambda: _gone(cid), timeout=60, what="the idle ipyparallel cluster to stop")
    finally:
        if not _gone(cid):
            kale.stop(cid)


def test_kale_cluster_stop_idle_stops_idle_clusters_and_keeps_pinned_ones(capsys):
    from kale_ext import cli

    idle = kale.start_cluster("local", workers=1, idle_timeout=20)
    pinned = kale.start_cluster("local", workers=1, pin=True)
    ids = idle.id, pinned.id
    try:
        idle.disconnect()
        pinned.disconnect()
        wait_for(lambda: all((s.idle or {}).get("idle_for") is not None
                             for s in kale.clusters()), timeout=30, what="both idle")
        assert cli.main(["cluster", "list"]) == 0
        assert "(stops in " in capsys.readouterr().out
        assert cli.main(["cluster", "stop", "--idle"]) == 0
        out = capsys.readouterr().out
        assert f"{idle.id}: stopped (idle)" in out
        assert f"{pinned.id}: kept (idle " in out and "(no timeout)" in out
        assert _gone(idle.id) and not _gone(pinned.id)
    finally:
        for cid in ids:
            if not _gone(cid):
                kale.stop(cid)
