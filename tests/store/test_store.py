"""The search store, against every implementation (today: SQLite on local disk)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kale_ext._errors import StoreError
from kale_ext.channel import Message
from kale_ext.store import Store, default_path, network_filesystem
from kale_ext.trial import TrialState

DEFINITION = {"name": "mnist", "fn": "train:train", "space": {"lr": {"kind": "loguniform"}},
              "metric": "val_acc", "mode": "max", "algorithm": "tpe", "trials": 4}


def report(trial: int, seq: int, *, attempt: int = 0, rank: int = 0, **values: float) -> Message:
    return Message(trial, attempt, rank, seq, "report", 1000.0 + seq, values)


@pytest.fixture(params=["sqlite"])
def path(request, tmp_path) -> Path:
    return tmp_path / f"search.kale.{request.param}"


@pytest.fixture
def store(path):
    with Store.open(path) as s:
        s.create_search(DEFINITION)
        yield s


def test_round_trip_of_everything(store, path):
    assert store.search()["definition"] == DEFINITION
    assert store.search()["name"] == "mnist" and store.search()["state"] == "created"
    store.set_search_state("running")
    store.add_trial(0, {"lr": 0.01})
    store.add_trial(1, {"lr": 0.1})
    store.transition(0, TrialState.RUNNING, "scheduled", worker="tcp://w1", job_id="42")
    store.append([Message(0, 0, 0, 0, "start", 999.0, {"hostname": "n1"}),
                  report(0, 1, epoch=0, val_acc=0.5, loss=1.0),
                  report(0, 2, epoch=1, val_acc=0.7, loss=0.6),
                  report(0, 3, epoch=2, val_acc=0.6, loss=float("nan")),
                  report(0, 0, rank=1, epoch=0, val_acc=0.99),  # rank 1: stored, not "last"
                  Message(0, 0, 0, -1, "heartbeat", 1001.0, {})])
    store.add_checkpoint(0, 2, "/ckpt/0/2.pt")
    store.transition(0, TrialState.COMPLETED, "finished")
    store.transition(1, TrialState.FAILED, "raised", error="Traceback ...\nValueError", retries=1)

    with Store.open(path, readonly=True, states=TrialState) as reader:
        assert reader.search()["state"] == "running"
        t0, t1 = reader.trials()
        assert reader.trial(0) == t0
        assert t0.state is TrialState.COMPLETED and t0.params == {"lr": 0.01}
        assert (t0.worker, t0.job_id, t0.checkpoint) == ("tcp://w1", "42", "/ckpt/0/2.pt")
        assert t0.started is not None and t0.ended is not None and t0.ended >= t0.started
        assert t0.best == 0.7 and t0.best_step == 1
        assert t0.last["epoch"] == 2 and math.isnan(t0.last["loss"])
        assert t1.state is TrialState.FAILED and t1.error.endswith("ValueError")
        assert t1.retries == 1 and t1.best is None and t1.last == {}

        rows = reader.metrics()
        assert [(r.trial, r.rank, r.seq, r.step) for r in rows] == [
            (0, 0, 1, 0), (0, 0, 2, 1), (0, 0, 3, 2), (0, 1, 0, 0)]
        assert reader.metrics(number=1) == []
        assert reader.metrics(since_rowid=rows[1].rowid) == rows[2:]
        assert reader.delivered() == {(0, 0, 0): 3, (0, 0, 1): 0}
        assert [(c.step, c.path) for c in reader.checkpoints(0)] == [(2, "/ckpt/0/2.pt")]

        assert [(t.source, t.target, t.reason) for t in reader.transitions(0)] == [
            (None, TrialState.PENDING, "added"),
            (TrialState.PENDING, TrialState.RUNNING, "scheduled"),
            (TrialState.RUNNING, TrialState.COMPLETED, "finished")]
        assert len(reader.transitions()) == 5

        # The JSON shapes the REST API serves (NaN as the JSON extension Python writes).
        shapes = [t0.to_dict(), rows[0].to_dict(), reader.transitions(0)[1].to_dict(),
                  reader.checkpoints()[0].to_dict()]
        assert json.loads(json.dumps(shapes))[0]["state"] == "completed"
        assert shapes[2]["from"] == "pending" and shapes[2]["to"] == "running"


def test_minimised_metric_keeps_the_lowest(tmp_path):
    with Store.open(tmp_path / "min.kale.sqlite") as store:
        store.create_search({**DEFINITION, "metric": "loss", "mode": "min"})
        store.add_trial(0, {})
        store.append([report(0, 0, step=0, loss=0.9), report(0, 1, step=1, loss=0.3)])
        store.append([report(0, 2, step=2, loss=0.5), report(0, 3, step=3, loss=float("inf"))])
        assert (store.trial(0).best, store.trial(0).best_step) == (0.3, 1)


def test_wal_mode_and_owner_only_files(store, path):
    store.append([report(0, 0, loss=1.0)])
    with Store.open(path, readonly=True) as reader:
        assert reader._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for suffix in ("", "-wal", "-shm", ".lock"):
        assert os.stat(f"{path}{suffix}").st_mode & 0o777 == 0o600, suffix


def test_reappending_is_idempotent(store):
    store.add_trial(0, {})
    batch = [report(0, i, step=i, val_acc=i / 10) for i in range(5)]
    store.append(batch)
    before = (store.metrics(), store.delivered(), store.trial(0))
    store.append(batch)
    store.append(batch[:2])  # an older re-delivery does not move "last" back
    assert (store.metrics(), store.delivered(), store.trial(0)) == before
    assert store.trial(0).last["step"] == 4


def test_a_new_attempt_restarts_seq_and_becomes_last(store):
    store.add_trial(0, {})
    store.append([report(0, i, step=i) for i in range(3)])
    store.transition(0, TrialState.RUNNING, "restarted", attempt=1)
    store.append([report(0, 0, attempt=1, step=10)])
    assert store.trial(0).attempt == 1 and store.trial(0).last["step"] == 10
    assert store.delivered() == {(0, 0, 0): 2, (0, 1, 0): 0}


def test_concurrent_reader_process_while_the_writer_appends(store, path):
    total, batch = 20_000, 500
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from kale_ext.store import Store
        seen, last = [], 0
        with Store.open({str(path)!r}, readonly=True) as s:
            print("ready", flush=True)
            deadline = time.monotonic() + 60
            while len(seen) < {total} and time.monotonic() < deadline:
                rows = s.metrics(since_rowid=last)  # incremental, as live widgets read
                if rows:
                    last = rows[-1].rowid
                    seen.extend(r.seq for r in rows)
                    sys.stdout.write(f"{{len(rows)}} ")
        print()
        print(len(seen), seen == list(range({total})))
    """)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    for start in range(0, total, batch):
        store.append([report(0, i, step=i, val_acc=0.5) for i in range(start, start + batch)])
        time.sleep(0.005)
    out, _ = reader.communicate(timeout=60)
    reads, result = out.strip().splitlines()
    assert result == f"{total} True"
    assert len(reads.split()) > 1  # it read while the writer was still writing


def test_reader_after_the_writer_closed(path):
    with Store.open(path) as writer:
        writer.create_search(DEFINITION)
        writer.add_trial(0, {"lr": 0.1})
    with Store.open(path, readonly=True) as reader:
        assert reader.trial(0).params == {"lr": 0.1}
    with Store.open(path) as writer:  # resumed by a new driver
        writer.transition(0, TrialState.RUNNING)
        assert writer.search()["definition"] == DEFINITION


def test_rows_survive_sigkill_right_after_append(tmp_path):
    path = tmp_path / "killed.kale.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from kale_ext.channel import Message
        from kale_ext.store import Store
        s = Store.open({str(path)!r})
        s.create_search({{"metric": "loss", "mode": "min"}})
        s.add_trial(0, {{}})
        s.append([Message(0, 0, 0, i, "report", 0.0, {{"loss": i}}) for i in range(1000)])
        print("appended", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "appended"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with Store.open(path) as store:  # the lock died with the writer: a new driver resumes
        assert len(store.metrics()) == 1000
        assert store.delivered() == {(0, 0, 0): 999}
        assert store.trial(0).best == 0.0


def test_one_writer_at_a_time(store, path):
    with pytest.raises(StoreError, match="open for writing in another process"):
        Store.open(path)
    with Store.open(path, readonly=True) as reader, \
            pytest.raises(StoreError, match="opened read-only"):
        reader.add_trial(5, {})


def test_driver_threads_share_the_writer(store):
    store.add_trial(0, {})

    def append(rank: int) -> None:
        for i in range(50):
            store.append([report(0, i, rank=rank, loss=1.0)])

    threads = [threading.Thread(target=append, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    for _ in range(50):
        store.transition(0, TrialState.RUNNING, "heartbeat check")
    for t in threads:
        t.join()
    assert len(store.metrics()) == 200 and len(store.transitions(0)) == 51


def test_clear_errors(store, path, tmp_path):
    with pytest.raises(StoreError, match="already holds a search"):
        store.create_search(DEFINITION)
    with pytest.raises(StoreError, match="No trial 3"):
        store.transition(3, TrialState.RUNNING)
    store.add_trial(3, {})
    with pytest.raises(StoreError, match="already exists"):
        store.add_trial(3, {})
    with pytest.raises(StoreError, match=r"Unknown trial field.*colour"):
        store.transition(3, TrialState.RUNNING, colour="red")
    with pytest.raises(StoreError, match="No search store at"):
        Store.open(tmp_path / "missing.kale.sqlite", readonly=True)
    with pytest.raises(StoreError, match="only SQLite"):
        Store.open("postgresql://db/search")
    (tmp_path / "junk").write_text("not a database, just text " * 100)
    with pytest.raises(StoreError, match="not a kale search store"):
        Store.open(tmp_path / "junk", readonly=True)
    with Store.open(tmp_path / "empty.kale.sqlite") as empty, \
            pytest.raises(StoreError, match="holds no search"):
        empty.search()


def test_default_path_is_under_the_store_dir(kale_state):
    assert default_path("mnist-tpe").parent == kale_state / "stores"
    with pytest.raises(StoreError, match="names a file"):
        default_path("../etc/passwd")


def test_network_filesystems_are_detected():
    mounts = textwrap.dedent("""\
        /dev/sda1 / ext4 rw 0 0
        server:/home /home nfs4 rw 0 0
        lustre@o2ib:/scratch /scratch lustre rw 0 0
        /dev/sdb1 /home/local\\040disk ext4 rw 0 0
    """)
    assert network_filesystem("/home/u/run.kale.sqlite", mounts) == "nfs4"
    assert network_filesystem("/scratch/u/x", mounts) == "lustre"
    assert network_filesystem("/home/local disk/x", mounts) is None
    assert network_filesystem("/tmp/x", mounts) is None


def test_writer_warns_on_a_network_filesystem(tmp_path, monkeypatch, caplog):
    """This machine has no network file system: the mount lookup answers 'lustre'."""
    from kale_ext.store import _sqlite

    monkeypatch.setattr(_sqlite, "network_filesystem", lambda path: "lustre")
    with Store.open(tmp_path / "x.kale.sqlite"):
        pass
    assert "on a lustre file system" in caplog.text


def test_metrics_limit_is_applied_in_the_query(store):
    store.add_trial(0, {})
    store.add_trial(1, {})
    store.append([report(t, i, step=i, val_acc=i / 10) for t in (0, 1) for i in range(5)])
    every = store.metrics()
    assert store.metrics(limit=3) == every[:3]
    assert store.metrics(since_rowid=every[2].rowid, limit=4) == every[3:7]
    assert store.metrics(1, limit=2) == [r for r in every if r.trial == 1][:2]
    assert store.metrics(limit=0) == []
    with pytest.raises(StoreError, match="limit must be an integer >= 0"):
        store.metrics(limit=-1)


def test_objective_given_by_the_caller_wins_over_the_definition(tmp_path):
    with Store.open(tmp_path / "obj.kale.sqlite", objective=("loss", "min")) as store:
        store.create_search(DEFINITION)  # says val_acc/max
        store.add_trial(0, {})
        store.append([report(0, 0, step=0, loss=0.9, val_acc=0.1),
                      report(0, 1, step=1, loss=0.3, val_acc=0.05)])
        assert (store.trial(0).best, store.trial(0).best_step) == (0.3, 1)


def test_states_come_back_as_the_callers_type(store, path):
    store.add_trial(0, {})
    store.transition(0, TrialState.PAUSED, "paused")
    assert store.trial(0).state == 2 and type(store.trial(0).state) is int
    with Store.open(path, readonly=True, states=TrialState) as reader:
        assert reader.trial(0).state is TrialState.PAUSED
        assert reader.trial(0).to_dict()["state"] == "paused"
        assert [t.target for t in reader.transitions(0)] == [TrialState.PENDING,
                                                              TrialState.PAUSED]


def test_a_reader_never_finds_a_store_without_its_schema(tmp_path):
    """A panel or `kale search show` polling for a new store opens it as soon as the file
    exists: the file must appear with its schema, never empty."""
    seen: list[str] = []
    for i in range(40):
        path = tmp_path / f"s{i}.kale.sqlite"
        stop = threading.Event()

        def poll(path: Path = path, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                if path.exists():
                    try:
                        Store.open(path, readonly=True).close()
                    except StoreError as e:
                        seen.append(str(e))
                    return

        reader = threading.Thread(target=poll)
        reader.start()
        Store.open(path).close()
        stop.set()
        reader.join()
    assert seen == []


def test_a_full_disk_raises_store_error_and_keeps_what_was_written(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a small tmpfs (needs root): {done.stderr}"
    try:
        with Store.open(mount / "s.kale.sqlite") as store:
            store.create_search(DEFINITION)
            store.add_trial(0, {})
            seq = 0
            with pytest.raises(StoreError, match=r"could not be written: .*full.*Free space"):
                while seq < 10_000:
                    store.append([report(0, seq, step=seq, val_acc=0.5, blob="x" * 10_000)])
                    seq += 1
            assert seq > 5
            kept = [m.seq for m in store.metrics(0)]
            assert kept == list(range(seq))  # every committed row, none of the failed one
        with Store.open(mount / "s.kale.sqlite", readonly=True) as reader:
            assert [m.seq for m in reader.metrics(0)] == kept
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
