"""Checks every backend and batch system must pass; the test modules call them."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch

import kale_ext as kale
from kale_ext.training import RankError
from tests.conftest import wait_for
from tests.training import trainables


def one_step_equals_full_batch(cluster, engine="torch"):
    fn = trainables.ddp_step if engine == "torch" else trainables.horovod_step
    run = kale.train_distributed(fn, cluster, workers=2, engine=engine, config={"lr": 0.1})
    params = run.wait(120)
    expected = trainables.reference_step(lr=0.1)
    assert len(params) == 2
    for rank_params in params:
        for got, want in zip(rank_params, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    frame = run.results()
    assert sorted(frame["rank"]) == [0, 1]
    assert run.state == "completed"
    if engine == "horovod":
        assert set(frame["total"]) == {3.0}  # hvd.allreduce of 1 + 2
    else:
        assert set(frame["samples"]) == {4}  # each rank stepped on half the batch
    return run


def allreduce(cluster):
    run = kale.train_distributed(trainables.allreduce, cluster, workers=2)
    out = run.wait(120)
    assert [o["sum"] for o in out] == [3.0, 3.0]
    assert [o["max"] for o in out] == [10.0, 10.0]
    assert [o["gathered"] for o in out] == [[0.0, 1.0], [0.0, 1.0]]
    assert {o["backend"] for o in out} == {"gloo"}  # no GPU here
    envs = [o["env"] for o in out]
    assert [e["RANK"] for e in envs] == ["0", "1"]
    assert {e["WORLD_SIZE"] for e in envs} == {"2"}
    assert len({(e["MASTER_ADDR"], e["MASTER_PORT"]) for e in envs}) == 1
    ranks = run.ranks
    assert set(ranks) == {0, 1} and ranks[0]["worker"] != ranks[1]["worker"]
    assert ranks[0]["pid"] != ranks[1]["pid"]


def sharding_covers_each_epoch_once(cluster):
    n, epochs = 25, 3
    run = kale.train_distributed(trainables.sharded_epochs, cluster, workers=2,
                                 config={"n": n, "epochs": epochs})
    per_rank = run.wait(120)
    for epoch in range(epochs):
        seen = per_rank[0][epoch] + per_rank[1][epoch]
        assert sorted(seen) == list(range(n))
    assert per_rank[0][0] != per_rank[0][1]  # reshuffled between epochs
    frame = run.results()
    assert len(frame) == 2 * epochs


def killed_rank_fails_the_run(cluster):
    """SIGKILL one rank's process mid-run: the run fails fast, naming the rank."""
    run = kale.train_distributed(trainables.steps_forever, cluster, workers=2,
                                 config={"sleep": 0.05})

    def both_stepping():
        frame = run.results()
        return len(run.ranks) == 2 and not frame.empty and (frame.groupby("rank")["step"].max()
                                                            >= 2).sum() == 2
    wait_for(both_stepping, timeout=90, what="both ranks stepping")
    victim = run.ranks[1]["pid"]
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(RankError) as info:
        run.wait(30)
    elapsed = time.monotonic() - killed
    assert elapsed < 10, f"the run took {elapsed:.1f} s to fail after a rank was killed"
    assert info.value.rank == 1
    assert "rank 1" in str(info.value) and "SIGKILL" in str(info.value)
    assert run.state == "failed"
    trial = run.store.trial(0)
    assert trial.state.label == "failed" and "SIGKILL" in (trial.error or "") + str(info.value)
    # The surviving rank was freed: both workers take a new run at once.
    allreduce(cluster)
    return elapsed


def raising_rank_fails_with_its_traceback(cluster):
    run = kale.train_distributed(trainables.steps_forever, cluster, workers=2,
                                 config={"fail_rank": 1, "fail_at": 2, "sleep": 0.02})
    with pytest.raises(RankError) as info:
        run.wait(60)
    assert info.value.rank == 1, str(info.value)
    assert "ValueError: boom on rank 1 at step 2" in str(info.value)
    assert ", in steps_forever\n" in info.value.traceback  # the rank's own frame


def stop_frees_a_rank_stuck_in_a_collective(cluster):
    run = kale.train_distributed(trainables.rank1_hangs, cluster, workers=2)
    wait_for(lambda: len(run.results()) == 2, timeout=90, what="both ranks started")
    time.sleep(0.5)  # rank 0 is now blocked in all_reduce, rank 1 asleep
    stopped = time.monotonic()
    run.stop(timeout=30)
    assert run.done(), "stop() did not end the ranks"
    assert time.monotonic() - stopped < 10
    assert run.state == "stopped"
    assert run.wait(1) == [None, None]
