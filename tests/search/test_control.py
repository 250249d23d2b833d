"""Steering a running search from another process, over its authenticated channel."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

import kale_ext as kale
from kale_ext.search import TrialState, channel_file, control
from tests.conftest import wait_for
from tests.search import trainables


def _remote(name, *args):
    code = ("import sys, json; from kale_ext.search import control; "
            f"print(control({name!r}, *{args!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=os.environ, timeout=60)


def test_another_process_stops_and_pauses_trials(dask_cluster):
    search = kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1), "epochs": 400,
                                                "sleep": 0.05},
                         metric="score", trials=2, cluster=dask_cluster).start()
    wait_for(lambda: len(search.runs) == 2 and all(r.last_step >= 1
                                                   for r in search.runs.values()),
             what="two running trials")
    mode = stat.S_IMODE(channel_file(search.name).stat().st_mode)
    assert mode == 0o600

    done = _remote(search.name, "stop", 0)
    assert done.returncode == 0, done.stderr
    assert "stop trial 0: done" in done.stdout
    wait_for(lambda: search.runs[0].state is TrialState.STOPPED, what="trial 0 stopped")

    refused = _remote(search.name, "resume", 0)
    assert refused.returncode != 0
    assert "not paused" in refused.stderr

    assert "pause" in control(search.name, "pause", 1)
    wait_for(lambda: search.runs[1].state is TrialState.PAUSED, what="trial 1 paused")
    control(search.name, "stop")
    search.wait(60)
    assert search.store.search()["state"] == "stopped"
    assert not channel_file(search.name).exists()
    with pytest.raises(kale.SearchError, match="no running driver"):
        control(search.name, "stop")


def test_control_with_a_wrong_key_is_refused(dask_cluster):
    from kale_ext.channel import ChannelInfo

    search = kale.Search(trainables.quadratic, {"x": kale.uniform(0, 1), "epochs": 400,
                                                "sleep": 0.05},
                         metric="score", trials=1, cluster=dask_cluster).start()
    wait_for(lambda: search.runs.get(0) and search.runs[0].last_step >= 1, what="a trial")
    path = channel_file(search.name)
    real = ChannelInfo.load(path)
    ChannelInfo(real.address, "00" * 32).save(path)
    with pytest.raises(kale.SearchError):
        control(search.name, "stop", timeout=3)
    assert search.runs[0].state is TrialState.RUNNING
    real.save(path)
    control(search.name, "stop")
    search.wait(60)
