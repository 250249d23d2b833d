"""Walltime-aware trials: a trial leaves a worker about to retire and resumes elsewhere.

A fixed-size Dask cluster on the ``debug`` queue (one-minute walltime): each worker
retires at its ``--lifetime``, 48 s give or take 6 s, and kale replaces it with a new
job. Each trial runs longer than its first worker lives. Some seconds before the worker
retires (the migration margin, a quarter of 48 s here) the worker is drained and the
trial is asked to leave at its next report: it checkpoints, ends, and its next attempt
starts from that checkpoint on a new worker. Migrations are neither failures nor
retries (``retries=0``: any lost worker would fail its trial), and every reported row
stays in the store. About 100 s.
"""

from __future__ import annotations

import itertools
import re
import shutil
import sys
import time

import pytest

import kale_ext as kale
from kale_ext.search import TrialState
from tests.testbed.conftest import Testbed
from tests.testbed.kale_helpers import by_value, on_testbed, scratch_dir

pytestmark = pytest.mark.testbed

by_value(sys.modules[__name__])

WORKERS = 2
EPOCHS = 45


def epochs(config: dict) -> None:
    """A trial: one epoch a second, a checkpoint before each report; resumes from it."""
    import time

    import kale_ext as kale

    state = kale.load_checkpoint()
    start = state["epoch"] + 1 if state else 0
    for epoch in range(start, config["epochs"]):
        time.sleep(1)
        kale.save_checkpoint({"epoch": epoch}, epoch)
        kale.report(epoch=epoch, score=config["x"] + epoch)


def test_trials_migrate_from_retiring_workers_from_their_checkpoints(
        testbed: Testbed, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT", "1s")
    ckpt = scratch_dir(testbed, "kale-migration")
    with on_testbed(testbed, tmp_path_factory.mktemp("kale-state"),
                    **{"checkpoint-dir": str(ckpt)}):
        cluster = kale.start_cluster("slurm", profile="slurm", workers=WORKERS,
                                     queue="debug", walltime="00:01:00", memory="1GiB")
        try:
            times = cluster.retire_times()
            lifetimes = cluster.run_on_workers(lambda dask_worker: dask_worker.lifetime)
            assert set(times) == set(lifetimes), (times, lifetimes)
            now = time.time()
            for name, (at, lifetime) in times.items():
                assert lifetime == pytest.approx(lifetimes[name]), (times, lifetimes)
                assert now < at <= now + lifetime, (name, at - now, lifetime)
            search = kale.Search(epochs, {"x": kale.uniform(0, 1), "epochs": EPOCHS},
                                 metric="score", mode="max", trials=WORKERS, retries=0,
                                 cluster=cluster, seed=3).start()
            search.wait(240)
            frame = search.results()
            transitions = search.store.transitions()
        finally:
            cluster.stop()
            shutil.rmtree(ckpt, ignore_errors=True)

    assert len(frame) == WORKERS and set(frame["state"]) == {"completed"}, frame
    assert not [t for t in transitions if t.target == TrialState.FAILED], transitions
    assert list(frame["retries"]) == [0] * WORKERS, frame
    # Once each: a migrated trial lands on a new worker (never on one drained for its
    # retirement), whose life outlasts the trial's remaining epochs.
    assert list(frame["migrations"]) == [1] * WORKERS, frame
    for number in frame["trial"]:
        mine = [t for t in transitions if t.trial == number]
        moves = [t for t in mine if t.target == TrialState.PENDING and t.source is not None]
        assert moves and all(t.reason.startswith("migrated from ") for t in moves), mine
        rows = search.store.metrics(number)
        attempts = sorted({r.attempt for r in rows})
        assert len(attempts) >= 2, attempts
        by_attempt = {a: [int(r.values["epoch"]) for r in rows if r.attempt == a]
                      for a in attempts}
        for earlier, later in itertools.pairwise(attempts):
            # Resumed from the checkpoint saved just before the earlier attempt's last report.
            assert by_attempt[later][0] == by_attempt[earlier][-1] + 1 > 1, by_attempt
        # Every reported row is kept, each epoch exactly once across the attempts.
        assert sorted(e for a in attempts for e in by_attempt[a]) == list(range(EPOCHS))
        for move in moves:
            left = re.search(r"retires in (\d+) s", move.reason)
            started = next(t for t in mine if t.time > move.time
                           and t.target == TrialState.RUNNING and "started on" in t.reason)
            print(f"trial {number}: {move.reason}; "
                  f"left {left.group(1) if left else '?'} s before its worker retired; "
                  f"running again {started.time - move.time:.1f} s later ({started.reason})")
