"""The sender thread of a :class:`kale_ext.channel._connection.Connection`.

It alone uses the connection's zmq socket: it packs the queued messages of every
stream into numbered frames, sends them, reads the acknowledgements, re-sends what was
not acknowledged and sends the heartbeats of silent streams, all of them in one frame.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from typing import Any

import zmq

from kale_ext._errors import ChannelError
from kale_ext.channel._wire import (
    HEARTBEAT_SEQ,
    MAX_FRAME,
    REJECT,
    Reply,
    StreamKey,
    decode_acks,
    encode_body,
    encode_frame,
    encode_part,
    sign,
    verify,
    with_seq,
)

logger = logging.getLogger(__name__)

_MAX_BATCH = 2000  # messages of one stream per frame
_WINDOW = 50_000  # messages of one stream sent but not yet acknowledged
_MAX_BACKOFF = 8  # resend_after multiples between reconnects to a server that says nothing


class Stream:
    """The state of one (trial, attempt, rank) stream on a connection."""

    def __init__(self, key: StreamKey, cond: threading.Condition) -> None:
        self.key = key
        self.cond = cond  # on the connection's lock: only this stream's waiters wake
        self.next_seq = 0
        self.pending: deque[tuple[int, bytes]] = deque()  # unacknowledged, in seq order
        self.acked = -1
        self.sent_upto = -1  # highest seq sent since the last (re)send from the ack
        self.decision: Reply = {}  # replaced by each ack, never changed in place
        self.last_frame = -1  # the last frame that carried messages of this stream
        self.last_send = 0.0  # monotonic: the last frame with this stream in it
        self.closed = False


class Sender(ABC):
    """The connection's sender thread (:meth:`_run`) and what it does, as a base class."""

    address: str
    _key: bytes
    _reply_key: bytes
    _heartbeat: float
    _resend_after: float
    _idle_close: float | None
    _lock: threading.Lock
    _streams: dict[StreamKey, Stream]
    _ready: dict[StreamKey, None]
    _inflight: dict[StreamKey, None]
    _frames: int
    _error: ChannelError | None
    _closing: bool
    _close_deadline: float
    _woken: bool
    _wake_r: int

    @abstractmethod
    def _retire_idle(self) -> bool:
        """Close the connection after it had no stream for a while; False: it has one."""

    @abstractmethod
    def _close_pipe(self) -> None:
        """Close the pipe that wakes the sender thread."""

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
        tick = min(self._heartbeat, self._resend_after) / 4
        next_check = 0.0
        last_ack = time.monotonic()  # the server last answered (or we last reconnected)
        backoff = 1
        idle_since: float | None = None
        retired = False
        try:
            while True:
                wait_ms = max(0, min(int((next_check - time.monotonic()) * 1000) + 1, 500))
                events = dict(poller.poll(wait_ms))
                if self._wake_r in events:
                    with self._lock:
                        self._woken = False
                        os.read(self._wake_r, 4096)
                if sock in events and self._read_acks(sock):
                    last_ack, backoff = time.monotonic(), 1
                now = time.monotonic()
                beats: list[bytes] = []
                with self._lock:
                    if self._closing and (self._error is not None or now >= self._close_deadline
                                          or not any(s.pending for s in self._streams.values())):
                        return
                    if now >= next_check:
                        next_check = now + tick
                        if self._stalled(now, last_ack, self._resend_after * backoff):
                            # Frames sent to a server that died are lost: reconnect, re-send.
                            poller.unregister(sock)
                            sock.close()
                            sock = self._connect(context)
                            poller.register(sock, zmq.POLLIN)
                            last_ack, backoff = now, min(backoff * 2, _MAX_BACKOFF)
                        beats = self._heartbeats(now)
                        idle = self._idle_close is not None and not self._streams
                        idle_since = (idle_since or now) if idle else None
                    frame, sent = self._frame(self._frames, beats)
                if frame is not None and self._send(sock, frame):
                    with self._lock:
                        number = self._frames
                        self._frames += 1
                        for stream, count in sent:
                            stream.last_send = now
                            if count and not stream.closed:
                                if not self._inflight:
                                    last_ack = now  # the wait for a reply starts now
                                stream.sent_upto += count
                                stream.last_frame = number
                                self._inflight[stream.key] = None
                if idle_since is not None and self._idle_close is not None \
                        and now - idle_since > self._idle_close and self._retire_idle():
                    retired = True
                    return
        except Exception as e:  # keep the callers from waiting forever on a dead thread
            logger.exception("Metric channel sender to %s stopped", self.address)
            with self._lock:
                self._error = ChannelError(f"The metric channel sender thread failed: {e}")
        finally:
            with self._lock:
                for stream in self._streams.values():
                    stream.cond.notify_all()
            sock.close()
            context.term()
            if retired:
                self._close_pipe()

    def _stalled(self, now: float, last_ack: float, limit: float) -> bool:
        """Whether the server answered nothing for ``limit`` s while messages wait for it.

        Then every unacknowledged message is made ready to be re-sent (on a new socket:
        frames sent to a server that died are lost). Caller holds the lock.
        """
        if not self._inflight or now - last_ack <= limit:
            return False
        for key in self._inflight:
            stream = self._streams.get(key)
            if stream is not None:  # not closed meanwhile
                stream.sent_upto = stream.acked
                self._ready[key] = None
        self._inflight.clear()
        return True

    def _heartbeats(self, now: float) -> list[bytes]:
        """Return a heartbeat part for each stream silent for ``heartbeat`` s (caller locks)."""
        if self._error is not None or self._closing:
            return []
        beat = None
        parts = []
        for stream in self._streams.values():
            if now - stream.last_send >= self._heartbeat and stream.key not in self._ready:
                beat = beat or with_seq(HEARTBEAT_SEQ, encode_body("heartbeat", time.time(), {}))
                parts.append(encode_part(stream.key, stream.acked + 1, [beat]))
                stream.last_send = now
        return parts

    def _frame(self, number: int, parts: list[bytes]
               ) -> tuple[bytes | None, list[tuple[Stream, int]]]:
        """Pack the unsent messages of the ready streams after ``parts`` (caller locks).

        Returns frame ``number`` (None when there is nothing to send) and how many
        messages of each stream it holds; a stream that did not fit stays ready.
        """
        sent: list[tuple[Stream, int]] = []
        if self._error is not None:  # after a rejection nothing more is sent
            return None, sent
        size = sum(len(p) + 1 for p in parts)
        for key in list(self._ready):
            stream = self._streams.get(key)
            start = stream.sent_upto - stream.acked if stream else 0  # first unsent
            if stream is None or start >= len(stream.pending):
                del self._ready[key]  # closed, or all sent
                continue
            room = min(_MAX_BATCH, _WINDOW - start)
            if room <= 0:
                continue  # its window is full: it waits for acks
            batch = _fill(itertools.islice(stream.pending, start, start + room),
                          MAX_FRAME // 2 - size, first=not parts)
            if not batch:
                break  # the frame is full
            part = encode_part(key, stream.acked + 1, batch)
            parts.append(part)
            size += len(part) + 1
            sent.append((stream, len(batch)))
            if start + len(batch) >= len(stream.pending):
                del self._ready[key]
        return (encode_frame(number, parts) if parts else None), sent

    def _send(self, sock: zmq.Socket[Any], frame: bytes) -> bool:
        try:
            sock.send_multipart([sign(self._key, frame), frame], zmq.NOBLOCK)
        except zmq.Again:  # queue full while the server is away; retried later
            with self._lock:
                self._ready.update(dict.fromkeys(self._streams))
            return False
        return True

    def _read_acks(self, sock: zmq.Socket[Any]) -> bool:
        """Apply every reply waiting on ``sock``; True when the server answered."""
        answered = False
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return answered
            if len(frames) == 2 and frames == [b"", REJECT]:
                with self._lock:
                    self._error = ChannelError(
                        f"The metric server at {self.address} rejected this client's signature: "
                        "its key differs from the search's key. Use the key of the search's "
                        "ChannelInfo (KALE_CHANNEL_KEY).")
                    for stream in self._streams.values():
                        stream.cond.notify_all()
                continue
            if len(frames) != 2 or not verify(self._reply_key, frames[0], frames[1]):
                logger.warning("Ignored a metric channel reply with a bad signature")
                continue
            try:
                number, acks = decode_acks(frames[1])
            except (ValueError, KeyError, TypeError) as e:
                logger.warning("Ignored a malformed metric channel reply: %s", e)
                continue
            answered = True
            with self._lock:
                for key, ack, decision in acks:
                    found = self._streams.get(key)
                    if found is None:
                        continue
                    stream = found
                    stream.decision = decision
                    if ack > stream.acked:
                        while stream.pending and stream.pending[0][0] <= ack:
                            stream.pending.popleft()
                        stream.acked = ack
                        stream.sent_upto = max(stream.sent_upto, ack)
                    stream.cond.notify_all()
                self._settle(number)

    def _settle(self, number: int | None) -> None:
        """Forget the streams all acknowledged; re-send those frame ``number`` left out.

        The server handles a connection's frames in order, so a stream whose last frame
        is at most ``number`` and that is still unacknowledged failed there (or came
        after a gap): it is re-sent from its ack at once. Caller holds the lock.
        """
        for key in list(self._inflight):
            stream = self._streams.get(key)
            if stream is None or stream.sent_upto <= stream.acked:
                del self._inflight[key]
            elif number is not None and stream.last_frame <= number:
                stream.sent_upto = stream.acked
                del self._inflight[key]
                self._ready[key] = None


def _fill(pending: Iterable[tuple[int, bytes]], room: int, *, first: bool) -> list[bytes]:
    """Return the messages of ``pending`` that fit in ``room`` bytes (``first``: at least one)."""
    batch: list[bytes] = []
    size = 0
    for _, message in pending:
        size += len(message) + 1
        if (batch or not first) and size > room:
            break
        batch.append(message)
    return batch
