"""Faults lose nothing: a killed worker, a cancelled Slurm job, a killed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

import kale_ext as kale
from kale_ext.search import TrialState
from tests.conftest import wait_for
from tests.search import trainables
from tests.search.resumed import check_resumed, stored

ROOT = Path(__file__).resolve().parents[2]


def _acknowledged(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _slow_search(cluster, tmp_path, **kwargs):
    (tmp_path / "pids").mkdir()
    space = {"log": str(tmp_path / "log.jsonl"), "pids": str(tmp_path / "pids"),
             "epochs": 12, "sleep": 0.2, "q": 1.0, "tag": kale.choice(["a"])}
    return kale.Search(trainables.slow_checkpointed, space, metric="acc", trials=1,
                       cluster=cluster, retries=2, **kwargs).start()


def _check_retried(search, log):
    frame = search.results()
    assert frame.loc[0, "state"] == "completed"
    assert frame.loc[0, "retries"] == 1
    reasons = [t.reason for t in search.store.transitions(0)]
    assert any(r.startswith("worker lost") or "no heartbeat" in r for r in reasons), reasons
    assert any("retry 1 of 2" in r for r in reasons), reasons
    history = search.history(0)
    first = history[history["attempt"] == 0]
    # Every report acknowledged before the kill is in the store.
    for entry in _acknowledged(log)[: len(first)]:
        assert entry["epoch"] in set(history["epoch"])
    assert len(first) >= 2
    retried = history[history["attempt"] == history["attempt"].max()]
    # The retry continued from the last checkpoint rather than from scratch.
    assert retried["resumed_from"].iloc[0] > 1
    assert sorted(set(history["epoch"])) == list(range(1, 13))


@pytest.mark.parametrize("backend", ["dask", "ipyparallel"])
def test_killed_worker_fails_the_attempt_and_the_trial_is_retried(backend, tmp_path):
    with kale.start_cluster("local", backend=backend, workers=2) as cluster:
        search = _slow_search(cluster, tmp_path)
        wait_for(lambda: search.runs.get(0) and search.runs[0].last_step >= 3,
                 what="three reports")
        pid = int(next((tmp_path / "pids").iterdir()).name)
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: search.runs[0].retries == 1, timeout=30, what="the retry")
        detected = time.monotonic() - killed
        search.wait(120)
        _check_retried(search, tmp_path / "log.jsonl")
        assert detected < 15, f"a dead worker took {detected:.1f} s to notice"


@pytest.mark.slurm
def test_scancel_of_a_worker_job_mid_trial(tmp_path):
    with kale.start_cluster(profile="slurm-dev", backend="dask", workers=2) as cluster:
        search = _slow_search(cluster, tmp_path, heartbeat_timeout=5)
        wait_for(lambda: search.runs.get(0) and search.runs[0].last_step >= 3,
                 what="three reports")
        host_worker = search.runs[0].worker
        jobs = {w.name: w.job_id for w in cluster.status().workers}
        job = jobs.get(host_worker) or next(iter(jobs.values()))
        subprocess.run(["scancel", str(job)], check=True)
        wait_for(lambda: search.runs[0].retries == 1, timeout=30, what="the retry")
        search.wait(120)
        _check_retried(search, tmp_path / "log.jsonl")


def test_killed_driver_resumes_without_rerun_or_loss(tmp_path):
    (tmp_path / "pids").mkdir()
    store = tmp_path / "s.kale.sqlite"
    with kale.start_cluster("local", backend="dask", workers=2) as cluster:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "tests.search.driver_proc", cluster.id,
                                 str(store), str(tmp_path)], env=env, cwd=ROOT)
        try:
            def progress():
                if not store.exists():
                    return False
                from kale_ext.store import Store

                with Store.open(store, readonly=True, states=TrialState) as s:
                    trials = s.trials()
                done = [t for t in trials if t.state is TrialState.COMPLETED]
                running = [t for t in trials if t.state is TrialState.RUNNING
                           and t.last.get("epoch", 0) >= 2]
                return len(done) >= 1 and running
            wait_for(progress, timeout=90, what="a completed and a running trial")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        before, rows_before = stored(store)
        search = kale.Search.resume(store, cluster=cluster)
        search.wait(180)
        check_resumed(search, before, rows_before, tmp_path / "log.jsonl", trials=6)
        after = {t.number: t for t in search.store.trials()}
        resumed = [n for n, t in before.items() if t.state is TrialState.RUNNING]
        for n in resumed:
            assert after[n].attempt > before[n].attempt
            reasons = [t.reason for t in search.store.transitions(n)]
            assert any("re-queued" in r for r in reasons)


STEPS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "ten": "ten",
         "huge": 10**30}


def raw_step_report(config):
    """Sends its report straight over the channel, as a client of another version could."""
    from kale_ext.trial import current

    ctx = current()
    ctx.client.send("report", {"epoch": STEPS[config["step"]], "acc": 0.5},
                    timeout=20)
    kale.report(epoch=1, acc=0.6)  # raises TrialStopped: the driver failed the trial


def bad_step_report(config):
    kale.report(epoch=STEPS[config["step"]], acc=0.5)


def misnamed_metric(config):
    for epoch in range(3):
        kale.report(epoch=epoch, val_accuracy=0.5 + epoch / 10)


cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.mark.parametrize("step", sorted(STEPS))
def test_a_bad_step_fails_its_trial_with_the_value_and_the_rule(dask_cluster, tmp_path, step):
    for fn in (raw_step_report, bad_step_report):
        search = kale.Search(fn, {"step": kale.choice([step])}, metric="acc", trials=1,
                             cluster=dask_cluster, store=tmp_path / f"{fn.__name__}.kale.sqlite",
                             report_timeout=30).start()
        search.wait(120)  # the search ends: no batch is re-sent forever
        record = search.store.trial(0)
        assert record.state is TrialState.FAILED, (fn.__name__, record)
        assert "'epoch'" in record.error and repr(STEPS[step])[:20] in record.error, record.error
        assert "finite whole number" in record.error, record.error
        assert search.store.search()["state"] == "completed"
        # A batch that kept failing would be re-sent and its start applied again.
        starts = [t for t in search.store.transitions(0) if t.reason.startswith("started on")]
        assert len(starts) == 1, starts


def batch_rows_then_metric(config):
    for epoch in range(2):
        for batch in range(3):
            kale.report(step=epoch * 3 + batch, loss=1.0 / (batch + 1))
        kale.report(step=epoch * 3 + 2, val_acc=0.5 + epoch / 10)


def test_a_misnamed_metric_is_told_at_the_first_report_and_fails_its_trial(
        dask_cluster, tmp_path, caplog):
    space = {"x": kale.choice([1])}
    with caplog.at_level("WARNING", logger="kale_ext"):
        search = kale.Search(misnamed_metric, space, metric="val_acc", trials=1,
                             cluster=dask_cluster, store=tmp_path / "m.kale.sqlite").start()
        search.wait(120)
    record = search.store.trial(0)
    assert record.state is TrialState.FAILED
    assert "'val_acc'" in record.error and "'val_accuracy'" in record.error, record.error
    warned = [r.getMessage() for r in caplog.records if "first report" in r.getMessage()]
    assert len(warned) == 1 and "'val_accuracy'" in warned[0], warned  # once, at the first
    assert len(search.store.metrics(0)) == 3  # every row kept


def test_rows_before_the_metric_do_not_fail_a_trial_that_reports_it(dask_cluster, tmp_path):
    search = kale.Search(batch_rows_then_metric, {"x": kale.choice([1])}, metric="val_acc",
                         trials=1, cluster=dask_cluster,
                         store=tmp_path / "b.kale.sqlite").start()
    search.wait(120)
    record = search.store.trial(0)
    assert record.state is TrialState.COMPLETED, record.error
    assert search.best["value"] == pytest.approx(0.6)


@pytest.mark.parametrize("algorithm", ["random", "tpe"])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_value_is_never_the_samplers_best(algorithm, bad):
    from kale_ext.search import make_sampler

    for mode in ("max", "min"):
        sampler = make_sampler(algorithm, {"x": kale.uniform(0, 1)}, mode=mode, seed=1)
        first, second = sampler.ask(), sampler.ask()
        sampler.tell(first.number, bad, TrialState.COMPLETED)
        sampler.tell(second.number, 0.5, TrialState.COMPLETED)
        sampler.add({"x": 0.2}, bad, TrialState.COMPLETED)
        # search.best skips non-finite values (the store keeps only finite bests): so here.
        assert sampler.study.best_value == 0.5, (mode, bad)
        assert sampler.study.best_trial.params["x"] == second.config["x"]


def filling_reports(config):
    """Reports rows of about 20 kB until the driver stops answering; logs each one acked."""
    log = Path(config["log"])
    for epoch in range(100_000):
        kale.report(epoch=epoch, acc=0.5, blob="x" * 20_000)
        with log.open("a") as f:  # written once the row is durable in the store
            f.write(json.dumps({"epoch": epoch}) + "\n")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs: the store on it fills up (mounting needs root, as in CI)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a small tmpfs (needs root): {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_ends_the_search_cleanly(dask_cluster, tmp_path, small_disk):
    from kale_ext.search import channel_file, control

    log = tmp_path / "log.jsonl"
    search = kale.Search(filling_reports, {"log": str(log)}, metric="acc", trials=1,
                         cluster=dask_cluster, store=small_disk / "s.kale.sqlite",
                         report_timeout=5).start()
    wait_for(lambda: len(_acknowledged(log)) >= 10, timeout=60, what="ten stored reports")
    with pytest.raises(kale.SearchError, match="could not be written") as raised:
        search.wait(120)  # no dead loop left "alive"
    assert "full" in str(raised.value), raised.value
    assert not search.running
    assert not channel_file(search.name).exists()
    with pytest.raises(kale.SearchError, match="no running driver"):
        control(search.name, "stop")  # nothing answers "done" from a dead loop
    with pytest.raises(kale.SearchError, match="has ended"):
        search.stop()
    # Nothing acknowledged was lost.
    from kale_ext.store import Store

    with Store.open(small_disk / "s.kale.sqlite", readonly=True) as store:
        stored = {m.values["epoch"] for m in store.metrics(0)}
    acked = [e["epoch"] for e in _acknowledged(log)]
    assert acked and set(acked) <= stored, sorted(set(acked) - stored)
