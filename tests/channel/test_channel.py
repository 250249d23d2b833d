"""The metric channel over real zmq sockets on tcp loopback."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time

import numpy as np
import pytest
import zmq

from kale_ext._errors import ChannelError
from kale_ext.channel import ChannelClient, ChannelInfo, ChannelServer, new_key
from kale_ext.store import Store
from kale_ext.trial import Action, Decision
from tests.channel.conftest import Collector, free_port, spawn

STOP = Decision(Action.STOP, "stop button")


def assert_exactly_once(collector: Collector, stream: tuple[int, int, int], count: int) -> None:
    seqs = [m.seq for m in collector.stream(stream, kind=None) if m.seq >= 0]
    assert seqs == list(range(len(seqs)))  # in order, no gap, no duplicate
    reports = collector.stream(stream)
    assert [m.data["step"] for m in reports] == list(range(count))


def test_ordered_exactly_once_from_threads(server, key, collector):
    count, trials = 400, 4

    def worker(trial: int) -> None:
        with ChannelClient(server.address, key, trial, rank=trial % 2) as client:
            client.send("start", {"pid": os.getpid()})
            for i in range(count):
                # Mix queued and acknowledged sends on the same stream.
                client.send("report", {"step": i, "loss": 1 / (i + 1)}, block=i % 50 == 0)
            client.flush(timeout=20)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(trials)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for trial in range(trials):
        assert_exactly_once(collector, (trial, 0, trial % 2), count)


def test_ordered_exactly_once_from_processes(server, key, collector):
    count = 3000
    procs = [spawn("report", server.address, key.hex(), str(trial), "--rank", str(trial),
                   "--count", str(count)) for trial in range(3)]
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and "done" in out
    for trial in range(3):
        assert_exactly_once(collector, (trial, 0, trial), count)


def test_set_decision_reaches_the_next_send(server, key):
    with ChannelClient(server.address, key, trial=7) as client:
        assert Decision.from_dict(client.send("report", {"step": 0})).action is Action.CONTINUE
        server.set_decision(7, STOP.to_dict())
        assert Decision.from_dict(client.send("report", {"step": 1})) == STOP
        assert Decision.from_dict(client.decision) == STOP  # sticky until replaced
        server.set_decision(7, Decision().to_dict())
        assert Decision.from_dict(client.send("report", {"step": 2})).action is Action.CONTINUE


def test_handler_decision_comes_back_in_the_ack(server, key, collector):
    prune = Decision(Action.PRUNE, "below median")
    collector.decide = lambda m: prune if m.data.get("loss", 0) > 5 else None
    with ChannelClient(server.address, key, trial=3) as client:
        reply = client.send("report", {"step": 0, "loss": 1.0})
        assert Decision.from_dict(reply).action is Action.CONTINUE
        assert Decision.from_dict(client.send("report", {"step": 1, "loss": 9.0})) == prune


def test_decision_reaches_an_idle_trial_through_heartbeats(server, key):
    with ChannelClient(server.address, key, trial=2, heartbeat=0.05) as client:
        client.send("start", {})
        server.set_decision(2, STOP.to_dict())
        deadline = time.monotonic() + 5
        while Decision.from_dict(client.decision) != STOP and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Decision.from_dict(client.decision) == STOP


def test_wrong_key_is_rejected_and_the_server_keeps_serving(server, key, collector, caplog):
    caplog.set_level(logging.WARNING, logger="kale_ext.channel")
    with ChannelClient(server.address, new_key(), trial=9) as intruder, \
            pytest.raises(ChannelError, match="rejected this client's signature"):
        intruder.send("report", {"step": 0}, timeout=10)
    # Garbage frames from a raw socket are dropped as well.
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.address)
    raw.send_multipart([b"not a signature", b"{not json"])
    raw.send(b"one frame")
    assert raw.poll(5000) and raw.recv_multipart() == [b"", b"reject"]
    raw.close()
    assert not any(m.trial == 9 for m in collector.messages)
    assert "bad signature" in caplog.text
    with ChannelClient(server.address, key, trial=1) as client:
        client.send("report", {"step": 0}, timeout=10)
    assert_exactly_once(collector, (1, 0, 0), 1)


def test_server_killed_and_restarted_loses_and_duplicates_nothing(key, tmp_path):
    port, store_path, dups = free_port(), tmp_path / "s.kale.sqlite", tmp_path / "dups.txt"

    def start_server(delay: float):
        proc = spawn("serve", key.hex(), str(port), str(store_path), str(dups),
                     "--delay", str(delay))
        assert proc.stdout is not None
        return proc, proc.stdout.readline().strip()

    first, address = start_server(delay=0.02)
    count = 20_000
    client = ChannelClient(address, key, trial=0, resend_after=0.3)

    def report() -> None:  # keeps reporting while the server dies and comes back
        for i in range(count):
            client.send("report", {"step": i}, block=False)
            if i % 500 == 0:
                time.sleep(0.01)

    sender = threading.Thread(target=report)
    try:
        sender.start()
        with Store.open(store_path, readonly=True) as reader:
            deadline = time.monotonic() + 20
            while len(reader.metrics()) < 2000 and time.monotonic() < deadline:
                time.sleep(0.005)
            first.send_signal(signal.SIGKILL)
            first.wait()
            stored_at_kill = len(reader.metrics())
        assert 0 < stored_at_kill < count
        with pytest.raises(ChannelError, match="No acknowledgement"):
            client.flush(timeout=0.5)  # unacknowledged messages are still queued
        second, _ = start_server(delay=0.0)
        try:
            sender.join(30)
            client.flush(timeout=60)
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
    finally:
        client.close(timeout=0)
    with Store.open(store_path, readonly=True) as reader:
        assert [r.seq for r in reader.metrics()] == list(range(count))
        assert reader.delivered() == {(0, 0, 0): count - 1}
    assert not dups.exists(), dups.read_text()[:500]


def test_killed_client_stops_advancing_last_seen(server, key):
    proc = spawn("idle", server.address, key.hex(), "5")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    time.sleep(0.3)
    before = server.last_seen()[(5, 0, 0)]
    time.sleep(0.3)
    assert server.last_seen()[(5, 0, 0)] > before  # heartbeats keep it fresh
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # a heartbeat in flight may still land
    frozen = server.last_seen()[(5, 0, 0)]
    time.sleep(0.5)
    assert server.last_seen()[(5, 0, 0)] == frozen


def test_heartbeats_arrive_without_reports(server, key, collector):
    with ChannelClient(server.address, key, trial=4, attempt=1, heartbeat=0.05):
        assert collector.wait_for(lambda: len(collector.stream((4, 1, 0), "heartbeat")) >= 3,
                                  timeout=5)
    beats = collector.stream((4, 1, 0), "heartbeat")
    assert all(m.seq == -1 and m.data == {} for m in beats)
    assert (4, 1, 0) in server.last_seen()


def test_non_json_metric_raises_a_clear_error(server, key, collector):
    with ChannelClient(server.address, key, trial=6) as client:
        with pytest.raises(ChannelError, match=r"'weights'.*numpy\.ndarray of shape \(3,\)"):
            client.send("report", {"loss": 0.1, "weights": np.ones(3)})
        with pytest.raises(ChannelError, match=r"'model'.*object"):
            client.send("report", {"model": object()}, block=False)
        # Scalars of numpy and torch become plain numbers; non-finite floats pass.
        torch = pytest.importorskip("torch")
        client.send("report", {"step": np.int64(0), "loss": np.float32(0.5),
                               "acc": np.array(0.25), "lr": torch.tensor(0.125),
                               "nan": float("nan"), "inf": np.float64("inf"),
                               "ok": np.bool_(True), "tags": ["a", 1]})
    (m,) = collector.stream((6, 0, 0))
    assert m.seq == 0  # the rejected sends used no sequence number
    assert m.data["step"] == 0 and type(m.data["step"]) is int
    assert m.data["loss"] == 0.5 and m.data["acc"] == 0.25 and m.data["lr"] == 0.125
    assert math.isnan(m.data["nan"]) and m.data["inf"] == math.inf and m.data["ok"] is True


def test_send_times_out_clearly_without_a_server(key):
    address = f"tcp://127.0.0.1:{free_port()}"
    with ChannelClient(address, key, trial=0) as client:
        with pytest.raises(ChannelError, match=f"No acknowledgement .* at {address}"):
            client.send("report", {"step": 0}, timeout=0.3)
        client.close(timeout=0)


def test_client_refuses_use_after_fork(server, key):
    with ChannelClient(server.address, key, trial=8) as client:
        client.send("start", {})
        pid = os.fork()
        if pid == 0:  # child: must fail fast, not send a second stream
            try:
                client.send("report", {"step": 0})
            except ChannelError as e:
                os._exit(0 if "forked child" in str(e) else 2)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_channel_info_round_trips(key, tmp_path, monkeypatch):
    info = ChannelInfo.create("tcp://10.0.0.1:5555", key)
    assert ChannelInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    assert info.key == key
    for name, value in info.to_env().items():
        monkeypatch.setenv(name, value)
    assert ChannelInfo.from_env() == info
    path = tmp_path / "channel.json"
    info.save(path)
    assert ChannelInfo.load(path) == info
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(ChannelError, match="KALE_CHANNEL_ADDRESS"):
        ChannelInfo.from_env({})


def test_server_rejects_a_short_key_and_a_busy_port(collector):
    from kale_ext._errors import ConfigError

    with pytest.raises(ConfigError, match="at least 16 bytes"):
        ChannelServer(b"short", collector)
    with ChannelServer(new_key(), collector, host="127.0.0.1") as first, \
            pytest.raises(ChannelError, match="Cannot bind"):
        ChannelServer(new_key(), collector, host="127.0.0.1", port=first.port)


def test_messages_the_handler_keeps_failing_on_are_dropped_and_logged(key, caplog):
    calls: list[int] = []
    good = Collector()

    def handler(batch):
        calls.extend(m.trial for m in batch if m.trial == 1)
        if any(m.trial == 1 and m.kind == "report" for m in batch):
            raise ValueError("cannot handle trial 1")
        return good(batch)

    with caplog.at_level(logging.WARNING, logger="kale_ext.channel._server"), \
            ChannelServer(key, handler, host="127.0.0.1") as server, \
            ChannelClient(server.address, key, 1, resend_after=0.2) as bad, \
            ChannelClient(server.address, key, 2, resend_after=0.2) as fine:
        fine.send("report", {"step": 0}, timeout=20)
        bad.send("report", {"step": 0}, timeout=30)  # acknowledged once dropped
        bad.send("report", {"step": 1, "ok": True}, timeout=20)  # not blocked by the drop
        fine.send("report", {"step": 1}, timeout=20)
    assert calls.count(1) >= 3
    assert "Dropped 1 messages of trial 1" in caplog.text
    assert "failed on them 3 times" in caplog.text and "cannot handle trial 1" in caplog.text
    assert [m.data["step"] for m in good.stream((2, 0, 0))] == [0, 1]


def test_a_store_error_is_never_dropped(key):
    from kale_ext._errors import StoreError

    calls = []

    def handler(batch):
        calls.append(len(batch))
        raise StoreError("disk full")

    with ChannelServer(key, handler, host="127.0.0.1") as server, \
            ChannelClient(server.address, key, 0, resend_after=0.1) as client:
        with pytest.raises(ChannelError, match="No acknowledgement"):
            client.send("report", {"step": 0}, timeout=2.0)
        assert len(calls) >= 4  # re-sent and refused every time, never acknowledged


def _raw(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    return sock


def _reply(sock, timeout_ms=5000):
    return sock.recv_multipart() if sock.poll(timeout_ms) else None


def _heartbeat(stream, when):
    from kale_ext.channel._wire import HEARTBEAT_SEQ, encode_batch, encode_body, with_seq

    return encode_batch(stream, 0, [with_seq(HEARTBEAT_SEQ, encode_body("heartbeat", when, {}))])


def test_an_oversize_frame_is_not_read_and_the_server_keeps_serving(server, key):
    from kale_ext.channel._wire import MAX_FRAME

    big = _raw(server)
    big.send_multipart([b"x" * 32, b"y" * (MAX_FRAME + 1)])
    assert _reply(big, 3000) is None  # zmq dropped it unread: no reply, not even a reject
    big.close()
    small = _raw(server)
    small.send_multipart([b"x" * 32, b"y"])
    assert _reply(small) == [b"", b"reject"]
    small.close()
    with ChannelClient(server.address, key, 0) as client:
        with pytest.raises(ChannelError, match=r"at most \d+ bytes"):
            client.send("report", {f"m{i}": i for i in range(500_000)})
        client.send("report", {"step": 0}, timeout=20)


def test_a_replayed_heartbeat_is_no_sign_of_life(server, key):
    from kale_ext.channel._wire import direction_keys, sign

    up, _ = direction_keys(key)
    stream = (7, 0, 0)
    frame = _heartbeat(stream, time.time())
    sock = _raw(server)
    sock.send_multipart([sign(up, frame), frame])
    assert _reply(sock) is not None  # acknowledged
    first = server.last_seen()[stream]
    time.sleep(0.05)  # server time must be able to move on between the two
    sock.send_multipart([sign(up, frame), frame])  # the same heartbeat, replayed
    assert _reply(sock) is not None
    assert server.last_seen()[stream] == first
    fresh = _heartbeat(stream, time.time() + 1)
    sock.send_multipart([sign(up, fresh), fresh])
    assert _reply(sock) is not None
    assert server.last_seen()[stream] > first
    sock.close()


def test_the_two_directions_are_signed_with_different_keys(server, key):
    from kale_ext.channel._wire import decode_ack, direction_keys, sign, verify

    up, down = direction_keys(key)
    assert up != down and key not in (up, down)
    frame = _heartbeat((8, 0, 0), time.time())
    sock = _raw(server)
    for wrong in (down, key):  # signed as a reply, or with the bare search key
        sock.send_multipart([sign(wrong, frame), frame])
        assert _reply(sock) == [b"", b"reject"]
    sock.send_multipart([sign(up, frame), frame])
    signature, ack = _reply(sock)
    assert verify(down, signature, ack) and not verify(up, signature, ack)
    assert decode_ack(ack)[0] == (8, 0, 0)
    # The ack, captured and sent back to the driver as if from a worker, is rejected.
    sock.send_multipart([signature, ack])
    assert _reply(sock) == [b"", b"reject"]
    sock.close()
