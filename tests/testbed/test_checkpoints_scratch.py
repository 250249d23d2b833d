"""Checkpoints on shared scratch: a trial whose worker dies on one node resumes on another.

Real here: two ipyparallel engines in one Slurm job, on two test-bed nodes; the engine
running the trial is killed with SIGKILL inside its node; ``kale.checkpoint-dir`` is
``$SCRATCH/...``, the test bed's shared scratch, and ``/local`` is each node's own disk.
"""

from __future__ import annotations

import shutil
import sys
import warnings

import dask.config
import pytest

import kale_ext as kale
from kale_ext.trial import CHECKPOINT_MARKER, CheckpointWarning
from tests.conftest import wait_for
from tests.testbed.conftest import Testbed
from tests.testbed.kale_helpers import by_value, engines_on_two_nodes, on_testbed, scratch_dir

pytestmark = pytest.mark.testbed

by_value(sys.modules[__name__])


def epochs(config):
    """Save a checkpoint each epoch and report where it runs; resume from the latest."""
    import os
    import socket
    import time

    import kale_ext as kale

    state = kale.load_checkpoint()
    start = state["epoch"] + 1 if state else 0
    for epoch in range(start, config["epochs"]):
        time.sleep(config["pause"])
        kale.save_checkpoint({"epoch": epoch}, epoch)
        kale.report(epoch=epoch, start=start, host=socket.gethostname(), pid=os.getpid())
    return start


def quick(config):
    """A trial that only reports where it ran."""
    import socket

    import kale_ext as kale

    kale.report(epoch=0, host=socket.gethostname())


@pytest.fixture(scope="module")
def cluster(testbed: Testbed, tmp_path_factory):
    ckpt = scratch_dir(testbed, "kale-checkpoints")
    # A $SCRATCH path, as a site profile writes it; kale expands it.
    setting = f"$SCRATCH/{ckpt.name}"
    with on_testbed(testbed, tmp_path_factory.mktemp("kale-state"), **{"checkpoint-dir": setting}):
        cluster = engines_on_two_nodes(testbed)
        try:
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(ckpt, ignore_errors=True)


def test_killed_trial_resumes_on_another_node(testbed: Testbed, cluster):
    search = kale.Search(epochs, {"epochs": 40, "pause": 0.25}, metric="epoch", trials=1,
                         retries=1, heartbeat_timeout=5, cluster=cluster, name="ckpt-resume")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.start()
        first = wait_for(lambda: _first_attempt(search, least=4), timeout=120,
                         what="the first attempt to checkpoint 4 epochs")
        host, pid = first[-1]["host"], int(first[-1]["pid"])
        # Kill the engine (the trial runs in it) inside its node: its worker is lost.
        proc = testbed.on_node(host, "kill", "-KILL", str(pid))
        assert proc.returncode == 0, proc.stderr
        search.wait(180)
    assert not [w for w in caught if issubclass(w.category, CheckpointWarning)]

    trial = search.store.trial(0)
    assert trial.state.label == "completed", trial
    history = search.history(0)
    attempts = sorted(set(history["attempt"]))
    assert len(attempts) == 2, f"expected one retry, got attempts {attempts}"
    second = history[history["attempt"] == attempts[1]]
    saved = search.store.checkpoints(0)
    killed_at = max(int(r["epoch"]) for r in _first_attempt(search, least=1))
    # The retry ran on the other node and started right after a checkpoint of the first
    # attempt (the last one it saved, or the one before when the kill came between).
    assert len(set(second["host"])) == 1 and second["host"].iloc[0] != host, (host, second)
    assert second["host"].iloc[0] in testbed.nodes
    resumed = int(second["start"].iloc[0])
    assert 4 <= resumed <= killed_at + 1, (resumed, killed_at)
    assert int(second["epoch"].iloc[0]) == resumed
    assert int(history["epoch"].max()) == 39
    # Checkpoints went to the shared scratch, $SCRATCH expanded.
    assert saved and all(c.path.startswith(str(testbed.scratch)) for c in saved)
    assert {int(v) for v in second["start"]} == {resumed}


def test_node_local_checkpoint_folder_warns(testbed: Testbed, cluster):
    local = testbed.local / "kale-checkpoints-warn"
    try:
        with dask.config.set({"kale.checkpoint-dir": str(local)}), \
                pytest.warns(CheckpointWarning) as caught:
            search = kale.Search(quick, {"x": 1}, metric="epoch", trials=1, cluster=cluster,
                                 name="ckpt-local")
            # The driver marked the folder on the login node; no node sees that marker.
            assert (local / f"ckpt-local-{_digest(search)}" / CHECKPOINT_MARKER).exists()
            search.start().wait(120)
        message = str(caught[0].message)
        assert str(local) in message and "does not see" in message
        assert any(node in message for node in testbed.nodes), message
        assert "kale.checkpoint-dir" in message and "$SCRATCH" in message
        assert search.store.trial(0).state.label == "completed"
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _digest(search) -> str:
    return search.checkpoint_dir.name.rsplit("-", 1)[1]


def _first_attempt(search, *, least: int) -> list[dict]:
    """The rows of trial 0's first attempt, once it reported ``least`` of them."""
    frame = search.history(0)
    if frame.empty:
        return []
    rows = frame[frame["attempt"] == frame["attempt"].min()].to_dict("records")
    return rows if len(rows) >= least else []
