"""One connection per process, shared by many streams, against a real server on loopback."""

from __future__ import annotations

import threading
import time

import pytest

from kale_ext.channel import ChannelClient, ChannelServer, shared_connections
from tests.channel.conftest import Collector


def _senders() -> int:
    return sum(t.name.startswith("kale-channel-") for t in threading.enumerate())


def _wait(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_many_streams_share_one_connection_each_exactly_once_in_order(server, key, collector):
    trials, count = 40, 300
    before = _senders()
    clients = [ChannelClient(server.address, key, trial, shared=True) for trial in range(trials)]
    try:
        assert len({id(c.connection) for c in clients}) == 1
        assert clients[0].connection.streams() == trials
        assert _senders() == before + 1  # one sender thread for all of them
        assert [c for c in shared_connections() if c.address == server.address] \
            == [clients[0].connection]

        def report(client: ChannelClient, trial: int) -> None:
            client.send("start", {"trial": trial})
            for i in range(count):
                client.send("report", {"step": i, "trial": trial}, block=i % 50 == 49)
            client.flush(timeout=60)

        threads = [threading.Thread(target=report, args=(c, n)) for n, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for c in clients:
            c.close()
    for trial in range(trials):
        got = collector.stream((trial, 0, 0))
        assert [m.seq for m in got] == list(range(1, count + 1)), trial  # seq 0: the start
        assert [m.data["step"] for m in got] == list(range(count))
    assert server.peers() == 1  # the server heard one connection


def test_a_failing_stream_does_not_hold_back_the_others_on_its_connection(key):
    good = Collector()

    def handler(batch):
        if any(m.trial == 1 and m.kind == "report" for m in batch):
            raise ValueError("cannot handle trial 1")
        return good(batch)

    with ChannelServer(key, handler, host="127.0.0.1") as server:
        bad = ChannelClient(server.address, key, 1, shared=True)
        fine = ChannelClient(server.address, key, 2, shared=True)
        try:
            assert bad.connection is fine.connection
            fine.send("report", {"step": 0}, timeout=20)
            bad.send("report", {"step": 0}, block=False)
            fine.send("report", {"step": 1}, timeout=20)  # not blocked by trial 1
            bad.flush(timeout=30)  # re-sent until dropped (logged), then acknowledged
            bad.send("report", {"step": 1, "ok": True}, timeout=20)
        finally:
            bad.close()
            fine.close()
    assert [m.data["step"] for m in good.stream((2, 0, 0))] == [0, 1]


def test_silent_streams_on_a_connection_get_heartbeats(server, key, collector):
    from kale_ext.channel import Connection

    connection = Connection(server.address, key, heartbeat=0.05)
    try:
        streams = [connection.open((trial, 0, 0)) for trial in range(5)]
        assert collector.wait_for(lambda: all(
            len(collector.stream((trial, 0, 0), "heartbeat")) >= 3 for trial in range(5)))
        seen = server.last_seen()
        assert all((trial, 0, 0) in seen for trial in range(5))
        for stream in streams:
            connection.close_stream(stream, timeout=1)
    finally:
        connection.close(timeout=0)


def test_an_idle_shared_connection_closes_itself(server, key, monkeypatch):
    import kale_ext.channel._connection as connection_module

    monkeypatch.setattr(connection_module, "IDLE_CLOSE", 0.3)
    client = ChannelClient(server.address, key, 3, shared=True)
    client.send("report", {"step": 0}, timeout=20)
    conn = client.connection
    client.close()
    assert _wait(lambda: conn.closed), "the idle connection stayed open"
    assert conn not in shared_connections()
    again = ChannelClient(server.address, key, 4, shared=True)  # a new one opens
    try:
        assert again.connection is not conn
        again.send("report", {"step": 0}, timeout=20)
    finally:
        again.close()


def test_a_stream_cannot_be_opened_twice_on_one_connection(server, key):
    from kale_ext._errors import ChannelError

    with ChannelClient(server.address, key, 5, shared=True), \
            pytest.raises(ChannelError, match="already has an open stream"):
        ChannelClient(server.address, key, 5, shared=True)
