"""Generated channel frames fed to a real channel server socket of a search's driver end.

The driver end is a :class:`kale_ext.channel.ChannelServer` with the search's
:class:`kale_ext.trial.Ingest` over a SQLite store (see ``test_fuzz_report``). One
property of at least 1,000 cases sends, from a raw zmq socket, frames of every kind a
broken or hostile peer could: random bytes in one to four parts, valid frames truncated
(re-signed or not), frames over ``MAX_FRAME``, frames signed with the right key but
malformed (each field given a wrong type or range, or not JSON at all), frames signed
for the other direction, replayed frames and heartbeats, and reordered frames. After
every case:

- the server still answers a real client's report (no crash, no hang: an alarm fails a
  case that runs too long, nothing is timed);
- an unsigned frame was answered with a reject, and a signed malformed one was logged
  with an error naming the field and the rule;
- a replayed heartbeat did not move the stream's last sign of life, and a replayed or
  reordered report was stored once, in order;
- every row stored before the case is unchanged.

The test prints how many cases of each kind it ran.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from kale_ext.channel import ChannelClient
from kale_ext.channel._wire import (
    HEARTBEAT_SEQ,
    MAX_FRAME,
    direction_keys,
    encode_batch,
    encode_body,
    sign,
    with_seq,
)
from tests.fuzz.test_fuzz_report import CASES, FUZZ, HANG, METRIC, Driver, bounded

SERVER_LOG = "kale_ext.channel._server"


class Records(logging.Handler):
    """Keeps the channel server's log messages."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Iterator[Driver]:
    d = Driver(tmp_path_factory.mktemp("fuzz-channel") / "s.kale.sqlite")
    yield d
    d.close()


def _frame(trial: int, base: int, messages: list[tuple[int, str, float, dict[str, Any]]]) -> bytes:
    return encode_batch((trial, 0, 0), base, [with_seq(seq, encode_body(kind, when, data))
                                             for seq, kind, when, data in messages])


# A valid frame's fields, each of which a malformed frame replaces with something wrong.
BAD_VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                       st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                       st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
FIELDS = ["v", "trial", "attempt", "rank", "base", "msgs", "msgs[0]", "seq", "kind", "time",
          "data", "(missing)"]
KINDS = ["random", "truncated", "oversize", "malformed", "not json", "other direction",
         "replayed report", "replayed heartbeat", "reordered"]


def _malformed(field: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 1, "trial": 5, "attempt": 0, "rank": 0, "base": 0,
                            "msgs": [[0, "report", 1.0, {"epoch": 0, METRIC: 1.0}]]}
    message = body["msgs"][0]
    if field in body:
        body[field] = value
    elif field == "msgs[0]":
        body["msgs"] = [value]
    elif field == "(missing)":
        body.pop(str(value)[:1] or "v", None)
        body.pop("trial")
    else:
        message[["seq", "kind", "time", "data"].index(field)] = value
    return body


def test_channel_frames_never_break_the_server(driver):
    counts: Counter[str] = Counter()
    up, down = direction_keys(driver.key)
    records = Records()
    logging.getLogger(SERVER_LOG).addHandler(records)
    context = zmq.Context.instance()
    driver.add_trial(0)
    driver.add_trial(5)
    client = ChannelClient(driver.server.address, driver.key, 0, resend_after=1.0)
    client.send("report", {"epoch": 0, METRIC: 1.0}, timeout=HANG)
    # Frames captured from the wire: a delivered report of trial 7, a heartbeat of trial 8.
    driver.add_trial(7)
    captured = _frame(7, 0, [(0, "report", 1.0, {"epoch": 0, METRIC: 1.0})])
    reorder = iter(range(10**6))
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(driver.server.address)

    def send(parts: list[bytes]) -> list[bytes] | None:
        """Send ``parts``; return the server's reply to them, None when there was none.

        A probe (a fresh heartbeat of trial 9) follows on the same connection, which the
        server handles in order, so its acknowledgement marks where a reply would be.
        """
        probe = _frame(9, 0, [(HEARTBEAT_SEQ, "heartbeat", time.time(), {})])
        sock.send_multipart(parts)
        sock.send_multipart([sign(up, probe), probe])
        replies = []
        while True:
            assert sock.poll(HANG * 1000), "no answer from the server: hung"
            reply = sock.recv_multipart()
            if len(reply) == 2 and reply[0] and json.loads(reply[1]).get("trial") == 9:
                return replies[0] if replies else None
            replies.append(reply)

    assert send([sign(up, captured), captured]) is not None
    beat = _frame(8, 0, [(HEARTBEAT_SEQ, "heartbeat", time.time(), {})])
    assert send([sign(up, beat), beat]) is not None
    beat_seen = driver.server.last_seen()[(8, 0, 0)]
    driver.check_unchanged()
    rounds = iter(range(1, 10**6))

    @FUZZ
    @given(pick=st.integers(0, 2**32), data=st.data())
    def case(pick: int, data: st.DataObject) -> None:
        kind = KINDS[pick % len(KINDS)]  # a wide draw: every kind about equally often
        logged = len(records.messages)
        with bounded():
            if kind == "random":
                parts = data.draw(st.lists(st.binary(max_size=64), min_size=1, max_size=4))
                assert send(parts) == [b"", b"reject"], parts
            elif kind == "truncated":
                cut = data.draw(st.integers(0, len(captured) - 1))
                resign = data.draw(st.booleans())
                part = captured[:cut]
                reply = send([sign(up, part) if resign else sign(up, captured), part])
                if resign:  # signed but cut: logged as malformed, never stored
                    assert reply is None
                    assert any("must" in m for m in records.messages[logged:]), cut
                else:
                    assert reply == [b"", b"reject"]
            elif kind == "oversize":
                if data.draw(st.integers(0, 19)) == 0:  # 64 MiB a case: a few of them
                    big = context.socket(zmq.DEALER)
                    big.setsockopt(zmq.LINGER, 0)
                    big.connect(driver.server.address)
                    big.send_multipart([b"s" * 32, b"x" * (MAX_FRAME + 1)])
                    assert not big.poll(300)  # dropped unread by zmq: no answer at all
                    big.close()
                else:  # a signed frame just under the limit, with a message far over it
                    message = b'[0,"report",1.0,{"blob":"' + b"x" * 5 * 2**20 + b'"}]'
                    payload = encode_batch((5, 0, 0), 0, [message])  # stored once: seq 0
                    reply = send([sign(up, payload), payload])
                    assert reply is not None  # the server takes big frames a client splits
            elif kind == "malformed":
                field = data.draw(st.sampled_from(FIELDS))
                body = _malformed(field, data.draw(BAD_VALUES))
                payload = json.dumps(body).encode()
                reply = send([sign(up, payload), payload])
                if reply is None:  # refused: the log names the field and the rule
                    text = " ".join(records.messages[logged:])
                    assert "must" in text and ("field" in text or "payload" in text), text
                    counts[f"malformed {field}: refused"] += 1
                else:  # the wrong value happened to be a valid one
                    counts[f"malformed {field}: valid after all"] += 1
            elif kind == "not json":
                payload = data.draw(st.binary(max_size=64))
                reply = send([sign(up, payload), payload])
                if reply is None:
                    assert any("must" in m for m in records.messages[logged:]), payload
            elif kind == "other direction":
                payload = captured if data.draw(st.booleans()) else beat
                assert send([sign(down, payload), payload]) == [b"", b"reject"]
            elif kind == "replayed report":
                assert send([sign(up, captured), captured]) is not None  # acked again...
            elif kind == "replayed heartbeat":
                assert send([sign(up, beat), beat]) is not None
                assert driver.server.last_seen()[(8, 0, 0)] == beat_seen  # ...no sign of life
            elif kind == "reordered":
                trial = 100 + next(reorder)
                driver.add_trial(trial)
                frames = [_frame(trial, 0, [(seq, "report", 1.0, {"epoch": seq, METRIC: 0.5})])
                          for seq in range(3)]
                order = data.draw(st.permutations(range(3)))
                for i in order:
                    send([sign(up, frames[i]), frames[i]])
                for frame in frames:  # a client re-sends what was not acknowledged
                    send([sign(up, frame), frame])
            # The server still serves a real client, and nothing stored changed.
            client.send("report", {"epoch": next(rounds), METRIC: 0.5}, timeout=HANG)
            new = driver.check_unchanged()
        assert all(m.trial not in (7,) for m in new), "a replayed report was stored twice"
        if kind == "reordered":
            rows = [m.seq for m in new if m.trial == trial]
            assert rows == [0, 1, 2], rows
        counts[kind] += 1

    try:
        case()
    finally:
        logging.getLogger(SERVER_LOG).removeHandler(records)
        sock.close()
        client.close()
    total = sum(v for k, v in counts.items() if not k.startswith("malformed "))
    print(f"\nfuzz channel frames: {total} cases, " + ", ".join(
        f"{k} {v}" for k, v in sorted(counts.items())))
    assert total >= CASES
