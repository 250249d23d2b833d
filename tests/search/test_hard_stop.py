"""Trials that will not stop are stopped; superseded attempts stop and keep apart.

Real local Dask and ipyparallel clusters: a trial hung in ``time.sleep(3600)`` inside
its report loop, or in a C loop that never returns to Python, is hard-stopped once its
``trial_timeout`` and the ``stop_grace`` have passed (its worker process ended and
replaced) while the search completes its other trials; a user's stop that is not
honoured is enforced the same way; an attempt the driver gave up on hears STOP at its
next report and its checkpoints stay in its own folder.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import kale_ext as kale
from kale_ext import ClusterError, SearchError
from kale_ext.search import TrialState
from kale_ext.trial import current
from tests.clusters.thread_backend import ThreadCluster
from tests.conftest import wait_for
from tests.search.conftest import _start

# Workers need not import the tests package: ship these trial functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMEOUT, GRACE = 3.0, 2.0


def hangs(config):
    """Trial 0 hangs after its second report (in a sleep or in C); the others finish."""
    for epoch in range(1, 4):
        kale.report(epoch=epoch, score=float(config["n"] + epoch))
        if config["n"] == 0 and epoch == 2:
            if config["how"] == "sleep":
                time.sleep(3600)
            else:  # one C call that never returns to the interpreter, GIL held
                sum(range(10**15))
    return {"n": config["n"]}


def checkpointing(config):
    """Checkpoints and reports each epoch; records its pid and any stop, by attempt."""
    out, attempt = Path(config["out"]), current().attempt
    state = kale.load_checkpoint()
    first = state["epoch"] + 1 if state else 1
    (out / f"first-{attempt}").write_text(str(first))
    try:
        for epoch in range(first, config["epochs"] + 1):
            kale.save_checkpoint({"epoch": epoch}, epoch)
            kale.report(epoch=epoch, acc=float(epoch))
            (out / f"pid-{attempt}").write_text(str(os.getpid()))
            time.sleep(config["sleep"])
    except kale.TrialStopped as e:
        (out / f"stopped-{attempt}").write_text(e.reason)
        raise


@pytest.fixture(scope="module", params=["dask-local", "ipyparallel-local"])
def cluster(request, module_state):
    yield from _start(request.param, module_state)


def _hung_search(cluster, how, **kwargs):
    space = {"n": kale.grid([0, 1, 2]), "how": how}
    return kale.Search(hangs, space, metric="score", algorithm="grid", trials=3,
                       cluster=cluster, heartbeat_timeout=120, stop_grace=GRACE,
                       **kwargs).start()


def _hung(search):
    return next(t.number for t in search.store.trials() if t.params["n"] == 0)


def _reasons(search, trial):
    return [t.reason for t in search.store.transitions(trial)]


@pytest.mark.parametrize("how", ["sleep", "busy"])
def test_hung_trial_is_hard_stopped_after_timeout_and_grace(cluster, how):
    n_workers = cluster.n_workers()
    search = _hung_search(cluster, how, trial_timeout=TIMEOUT)
    search.wait(180)
    states = {t.params["n"]: TrialState(t.state) for t in search.store.trials()}
    assert states == {0: TrialState.FAILED, 1: TrialState.COMPLETED, 2: TrialState.COMPLETED}
    hung = search.store.trial(_hung(search))
    assert f"timeout after {TIMEOUT:g} s" in hung.error
    assert "hard-stopped" in hung.error, hung.error
    assert hung.retries == 0  # a timeout is no lost worker: not retried
    # Ended by the hard stop, not by the hour-long sleep or loop: the kill started at
    # timeout + grace (plus a driver tick) and took the time a process restart takes.
    assert hung.ended - hung.started < TIMEOUT + GRACE + 60
    cluster.wait_for_workers(n_workers, timeout=60)  # its worker is back in use
    again = kale.Search(hangs, {"n": kale.grid([1, 2]), "how": how}, metric="score",
                        algorithm="grid", trials=2, cluster=cluster).start().wait(120)
    assert {TrialState(t.state) for t in again.store.trials()} == {TrialState.COMPLETED}


def slow(config):
    """Reports every 0.3 s for 60 epochs: it hears its stop at the next report."""
    for epoch in range(1, 61):
        kale.report(epoch=epoch, score=float(epoch))
        time.sleep(0.3)


def test_trial_past_its_timeout_stops_at_its_next_report(cluster):
    search = kale.Search(slow, {"n": 0}, metric="score", trials=1, cluster=cluster,
                         trial_timeout=TIMEOUT, stop_grace=60).start().wait(120)
    trial = search.store.trial(0)
    assert TrialState(trial.state) is TrialState.FAILED
    assert f"timeout after {TIMEOUT:g} s" in trial.error
    assert "hard-stopped" not in trial.error  # it honoured the stop: no process ended
    assert 1 < trial.last["epoch"] < 60


def test_users_stop_is_enforced_after_the_grace_period(cluster):
    search = _hung_search(cluster, "sleep")
    run = wait_for(lambda: next((r for r in search.runs.values() if r.config["n"] == 0
                                 and r.last_step >= 2), None), timeout=60,
                   what="the trial with n=0 to hang after its second report")
    search.stop(run.number)
    search.wait(180)
    states = {t.params["n"]: TrialState(t.state) for t in search.store.trials()}
    assert states == {0: TrialState.STOPPED, 1: TrialState.COMPLETED, 2: TrialState.COMPLETED}
    reasons = _reasons(search, run.number)
    assert any("stopped by the user" in r and "hard-stopped" in r for r in reasons), reasons


def test_superseded_attempt_hears_stop_and_keeps_its_own_checkpoints(cluster, tmp_path):
    space = {"out": str(tmp_path), "epochs": 30, "sleep": 0.2, "tag": kale.choice(["a"])}
    search = kale.Search(checkpointing, space, metric="acc", trials=1, cluster=cluster,
                         retries=1, heartbeat_timeout=3, stop_grace=60).start()
    pid = int(wait_for(lambda: (tmp_path / "pid-0").exists()
                       and search.runs[0].last_step >= 3
                       and (tmp_path / "pid-0").read_text(), what="three reports"))
    os.kill(pid, signal.SIGSTOP)  # silent: the driver gives the attempt up and retries
    try:
        wait_for(lambda: search.runs[0].attempt == 1, timeout=60, what="the retry")
    finally:
        os.kill(pid, signal.SIGCONT)
    stop = wait_for(lambda: (tmp_path / "stopped-0").exists()
                    and (tmp_path / "stopped-0").read_text(), timeout=60,
                    what="the superseded attempt to hear its stop")
    assert "attempt 0 of trial 0" in stop, stop
    search.wait(180)
    assert TrialState(search.store.trial(0).state) is TrialState.COMPLETED
    folder = search.checkpoint_dir / "trial-0"
    assert sorted(p.name for p in folder.iterdir()) == ["attempt-0", "attempt-1"]
    first_retry = int((tmp_path / "first-1").read_text())
    assert first_retry > 1  # the retry continued from attempt 0's latest checkpoint
    assert (folder / "attempt-0" / f"step-{first_retry - 1:06d}.pt").exists()
    assert min(int(p.stem[5:]) for p in (folder / "attempt-1").glob("step-*.pt")) \
        == first_retry
    # Only the current attempts' checkpoints are recorded: restores never read a stale one.
    recorded = [Path(c.path) for c in search.store.checkpoints(0)]
    assert recorded[-1].parent.name == "attempt-1"
    late = [p for p in recorded if p.parent.name == "attempt-0"
            and int(p.stem[5:]) >= first_retry]
    assert not late, late


def neighbours(config):
    """Trial n=0 hangs; n=1's first attempt is slow, so it shares the process when killed."""
    for epoch in range(1, 9):
        kale.report(epoch=epoch, score=float(config["n"] + epoch))
        if config["n"] == 0 and epoch == 2:
            time.sleep(3600)
        time.sleep(1.0 if config["n"] == 1 and current().attempt == 0 else 0.0)


def test_other_trials_of_a_killed_process_are_requeued_not_failed(module_state):
    with kale.start_cluster("local", backend="dask", workers=1,
                            threads_per_worker=2) as shared:
        search = kale.Search(neighbours, {"n": kale.grid([0, 1])}, metric="score",
                             algorithm="grid", trials=2, max_concurrent=2, cluster=shared,
                             heartbeat_timeout=120, stop_grace=GRACE, retries=0).start()
        hung = wait_for(lambda: next((r for r in search.runs.values() if r.config["n"] == 0
                                      and r.last_step >= 2), None), timeout=60,
                        what="the trial with n=0 to hang")
        search.stop(hung.number)
        search.wait(180)
    by_n = {t.params["n"]: t for t in search.store.trials()}
    assert TrialState(by_n[0].state) is TrialState.STOPPED
    neighbour = by_n[1]
    reasons = _reasons(search, neighbour.number)
    assert TrialState(neighbour.state) is TrialState.COMPLETED, reasons
    assert neighbour.retries == 0 and neighbour.attempt == 1
    assert any(f"to hard-stop trial {hung.number}" in r for r in reasons), reasons


def ranks_hang(config):
    """Every rank of a distributed trial reports once, then hangs."""
    kale.report(step=0, score=1.0)
    time.sleep(3600)


def test_every_rank_of_a_hung_distributed_trial_is_ended(cluster):
    n_workers = cluster.n_workers()
    cluster.wait_for_workers(2, timeout=60)  # an earlier test's killed worker is back
    search = kale.Search(ranks_hang, {"n": 0}, metric="score", trials=1, retries=0,
                         workers_per_trial=2, cluster=cluster, heartbeat_timeout=120,
                         trial_timeout=TIMEOUT, stop_grace=GRACE).start().wait(180)
    trial = search.store.trial(0)
    assert TrialState(trial.state) is TrialState.FAILED, _reasons(search, 0)
    assert f"timeout after {TIMEOUT:g} s" in (trial.error or "") and \
        "hard-stopped" in (trial.error or ""), _reasons(search, 0)
    cluster.wait_for_workers(n_workers, timeout=60)
    # Both workers are free again: a trial of two ranks runs on them.
    again = kale.Search(hangs, {"n": 1, "how": "sleep"}, metric="score", trials=1,
                        workers_per_trial=2, cluster=cluster).start().wait(120)
    assert TrialState(again.store.trial(0).state) is TrialState.COMPLETED


def test_settings_are_checked_stored_and_restored(tmp_path):
    with pytest.raises(SearchError, match=r"trial_timeout must be .*more than 0.*got -1"):
        kale.Search(hangs, {"n": 0, "how": "sleep"}, metric="score", trial_timeout=-1,
                    store=tmp_path / "bad.kale.sqlite")
    with pytest.raises(SearchError, match=r"stop_grace must be .*0 or more.*got 'soon'"):
        kale.Search(hangs, {"n": 0, "how": "sleep"}, metric="score", stop_grace="soon",
                    store=tmp_path / "bad.kale.sqlite")
    path = tmp_path / "ok.kale.sqlite"
    kale.Search(hangs, {"n": 0, "how": "sleep"}, metric="score", trial_timeout=90,
                stop_grace=4, store=path).store.close()
    resumed = kale.Search.resume(path, cluster=ThreadCluster(1), start=False)
    assert (resumed.trial_timeout, resumed.stop_grace) == (90.0, 4.0)
    assert resumed._driver.timeouts.trial_timeout == 90.0


def test_a_backend_that_cannot_end_a_task_says_so():
    threads = ThreadCluster(1)
    future = threads.submit(time.sleep, 0.5)
    with pytest.raises(ClusterError, match="threads backend cannot end a running task"):
        threads.hard_stop(future)
    future.result()
    threads.stop()
