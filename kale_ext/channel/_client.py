"""The trial's end of the metric channel: a zmq DEALER owned by one background thread.

zmq sockets must not be shared between threads, so the socket lives on the client's
own sender thread; ``send`` only assigns a sequence number and queues the encoded
message, under a lock, and the sender batches, sends, re-sends and reads the acks. Use
one client per (trial, attempt, rank) process; a client does not survive ``fork``.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import zmq

from kale_ext._errors import ChannelError
from kale_ext.channel._wire import (
    HEARTBEAT_SEQ,
    MAX_FRAME,
    REJECT,
    Reply,
    decode_ack,
    direction_keys,
    encode_batch,
    encode_body,
    sign,
    verify,
    with_seq,
)

logger = logging.getLogger(__name__)

_MAX_BATCH = 2000  # messages per frame
_WINDOW = 50_000  # messages sent but not yet acknowledged


class ChannelClient:
    """Sends reports of one (trial, attempt, rank) to the search's :class:`ChannelServer`.

    Parameters
    ----------
    address : str
        The server's ``tcp://host:port``.
    key : bytes
        The search's key.
    trial, attempt, rank : int
        Which stream this client writes.
    heartbeat : float
        Seconds of silence after which a heartbeat is sent.
    resend_after : float
        Seconds without acknowledgement progress after which the client reconnects with
        a new socket and re-sends everything unacknowledged.
    """

    def __init__(self, address: str, key: bytes, trial: int, attempt: int = 0, rank: int = 0,
                 *, heartbeat: float = 2.0, resend_after: float = 2.0) -> None:
        if heartbeat <= 0 or resend_after <= 0:
            raise ChannelError(f"heartbeat and resend_after must be positive seconds, got "
                               f"{heartbeat=} and {resend_after=}.")
        self.address = address
        # This end signs with the key of frames to the driver and checks replies with the other.
        self._key, self._reply_key = direction_keys(key)
        self._stream = (trial, attempt, rank)
        self._heartbeat = heartbeat
        self._resend_after = resend_after
        self._pid = os.getpid()

        self._cond = threading.Condition()
        self._next_seq = 0
        self._pending: deque[tuple[int, bytes]] = deque()  # unacknowledged, in seq order
        self._acked = -1
        # The driver's latest reply: replaced by each ack, never changed in place.
        self._decision: Reply = {}
        self._error: ChannelError | None = None
        self._closing = False
        self._close_deadline = 0.0
        self._woken = False
        self._last_progress = 0.0  # monotonic time the ack last advanced
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)

        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"kale-channel-{trial}.{attempt}.{rank}")
        self._thread.start()

    # --- public API ------------------------------------------------------------------

    @property
    def decision(self) -> Reply:
        """The latest reply the driver sent (empty before the first)."""
        with self._cond:
            return self._decision

    def send(self, kind: str, data: Mapping[str, Any], *, block: bool = True,
             timeout: float | None = None) -> Reply:
        """Send one message; return the driver's latest reply.

        With ``block=True`` this returns once the driver acknowledged the message (it is
        then durable in the store), with the reply from that acknowledgement. With
        ``block=False`` the message is queued for the background sender and the latest
        known reply is returned at once.

        Raises
        ------
        ChannelError
            When ``data`` cannot be sent as JSON (naming the metric and its type), the
            server rejected the key, or no acknowledgement came within ``timeout``.
        """
        if kind == "heartbeat":
            raise ChannelError("Heartbeats are sent by the client itself; send 'report', "
                               "'start' or 'end'.")
        self._check_usable()
        body = encode_body(kind, time.time(), data)
        with self._cond:
            if self._closing:
                raise ChannelError(f"This channel client to {self.address} is closed.")
            seq = self._next_seq
            self._next_seq += 1
            self._pending.append((seq, with_seq(seq, body)))
            self._wake()
        if block:
            return self._wait_acked(seq, timeout)
        return self.decision

    def flush(self, timeout: float | None = None) -> Reply:
        """Wait until every message sent so far is acknowledged; return the latest reply."""
        self._check_usable()
        with self._cond:
            last = self._next_seq - 1
        return self._wait_acked(last, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting up to ``timeout`` s for acks), then stop."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._wake()
        if os.getpid() == self._pid:
            self._thread.join()
        with self._cond:
            lost = len(self._pending)
        if lost:
            logger.warning("Closed the metric channel to %s with %d unacknowledged messages "
                           "of trial %d (attempt %d, rank %d)", self.address, lost, *self._stream)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> ChannelClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- caller side -----------------------------------------------------------------

    def _check_usable(self) -> None:
        if os.getpid() != self._pid:
            raise ChannelError("A ChannelClient cannot be used in a forked child process: its "
                               "sender thread stayed in the parent. Create one per process.")
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:  # caller holds self._cond
        if not self._woken:
            self._woken = True
            os.write(self._wake_w, b"x")

    def _wait_acked(self, seq: int, timeout: float | None) -> Reply:
        with self._cond:
            done = self._cond.wait_for(lambda: (self._acked >= seq or self._error is not None
                                                or not self._thread.is_alive()), timeout)
            if self._error is not None:
                raise self._error
            if not done or self._acked < seq:
                raise ChannelError(
                    f"No acknowledgement from the metric server at {self.address} for message "
                    f"{seq} of trial {self._stream[0]} within {timeout} s: the search driver "
                    "is gone or unreachable. The message stays queued and is re-sent."
                )
            return self._decision

    # --- sender thread ---------------------------------------------------------------

    def _connect(self, context: zmq.Context[Any]) -> zmq.Socket[Any]:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        sock.connect(self.address)
        return sock

    def _run(self) -> None:
        context: zmq.Context[Any] = zmq.Context()
        sock = self._connect(context)
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(sock, zmq.POLLIN)
        sent_upto = -1  # highest seq sent on the current socket
        last_send = 0.0
        waiting_since: float | None = None  # when acks were last expected to progress
        try:
            while True:
                now = time.monotonic()
                deadlines = [last_send + self._heartbeat]
                if waiting_since is not None:
                    deadlines.append(waiting_since + self._resend_after)
                wait_ms = max(0, min(int((min(deadlines) - now) * 1000) + 1, 500))
                events = dict(poller.poll(wait_ms))
                if self._wake_r in events:
                    with self._cond:
                        self._woken = False
                        os.read(self._wake_r, 4096)
                if sock in events:
                    self._read_acks(sock)
                now = time.monotonic()
                with self._cond:
                    acked = self._acked
                    if self._closing and (not self._pending or now >= self._close_deadline
                                          or self._error is not None):
                        return
                    if acked >= sent_upto:
                        waiting_since = None
                    elif self._last_progress > (waiting_since or 0):
                        waiting_since = self._last_progress
                    # Frames sent to a server that died are lost: reconnect and re-send.
                    if waiting_since is not None and now - waiting_since > self._resend_after:
                        poller.unregister(sock)
                        sock.close()
                        sock = self._connect(context)
                        poller.register(sock, zmq.POLLIN)
                        sent_upto, waiting_since = acked, now
                    start = sent_upto - acked  # index in pending of the first unsent
                    # After a rejection nothing more is sent; send() raises the error.
                    room = min(_MAX_BATCH, _WINDOW - start) if self._error is None else 0
                    batch = _fill(itertools.islice(self._pending, start, start + room))
                    base = acked + 1
                if batch:
                    frame = encode_batch(self._stream, base, batch)
                    if self._send(sock, frame):
                        sent_upto += len(batch)
                        last_send = now
                        waiting_since = waiting_since or now
                elif now - last_send >= self._heartbeat and self._error is None:
                    heartbeat = encode_body("heartbeat", time.time(), {})
                    frame = encode_batch(self._stream, base, [with_seq(HEARTBEAT_SEQ, heartbeat)])
                    self._send(sock, frame)
                    last_send = now
        except Exception as e:  # keep the caller from waiting forever on a dead thread
            logger.exception("Metric channel sender of trial %d stopped", self._stream[0])
            with self._cond:
                self._error = ChannelError(f"The metric channel sender thread failed: {e}")
        finally:
            with self._cond:
                self._cond.notify_all()
            sock.close()
            context.term()

    def _send(self, sock: zmq.Socket[Any], frame: bytes) -> bool:
        try:
            sock.send_multipart([sign(self._key, frame), frame], zmq.NOBLOCK)
        except zmq.Again:  # queue full while the server is away; retried later
            return False
        return True

    def _read_acks(self, sock: zmq.Socket[Any]) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) == 2 and frames == [b"", REJECT]:
                with self._cond:
                    self._error = ChannelError(
                        f"The metric server at {self.address} rejected this client's signature: "
                        "its key differs from the search's key. Use the key of the search's "
                        "ChannelInfo (KALE_CHANNEL_KEY).")
                    self._cond.notify_all()
                continue
            if len(frames) != 2 or not verify(self._reply_key, frames[0], frames[1]):
                logger.warning("Ignored a metric channel reply with a bad signature")
                continue
            try:
                stream, ack, decision = decode_ack(frames[1])
            except (ValueError, KeyError, TypeError) as e:
                logger.warning("Ignored a malformed metric channel reply: %s", e)
                continue
            if stream != self._stream:
                continue
            with self._cond:
                self._decision = decision
                if ack > self._acked:
                    while self._pending and self._pending[0][0] <= ack:
                        self._pending.popleft()
                    self._acked = ack
                    self._last_progress = time.monotonic()
                self._cond.notify_all()


def _fill(pending: Iterable[tuple[int, bytes]]) -> list[bytes]:
    """Return the messages of ``pending`` that fit in one frame (at least the first)."""
    batch: list[bytes] = []
    size = 0
    for _, message in pending:
        size += len(message) + 1
        if batch and size > MAX_FRAME // 2:  # room for the frame's head and the signature
            break
        batch.append(message)
    return batch
