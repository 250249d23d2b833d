"""One connection to a search's metric channel, shared by the streams of a process.

A :class:`Connection` owns one zmq DEALER socket and the one background thread that
uses it (zmq sockets must not be shared between threads). Any number of
(trial, attempt, rank) streams send through it: ``send`` only assigns the stream's
next sequence number and queues the encoded message; the thread packs the queued
messages of every stream into frames of several streams, sends them, reads the
acknowledgements, re-sends what was not acknowledged and sends heartbeats for the
streams that were silent (one frame for all of them). Each stream stays lossless and
ordered on its own, acknowledged and re-sent exactly as a connection of its own would.

:func:`open_shared` hands out streams on the one connection of this process to an
address and key (a Dask worker running 100 trials has one socket and one thread, not
100); the connection closes itself once it had no stream for :data:`IDLE_CLOSE`
seconds, and at the process's exit after sending what is queued.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from kale_ext._errors import ChannelError
from kale_ext.channel._sender import Sender, Stream
from kale_ext.channel._wire import Reply, StreamKey, direction_keys, encode_body, with_seq

logger = logging.getLogger(__name__)

IDLE_CLOSE = 30.0
"""Seconds a shared connection stays open without a stream before it closes itself."""


class Connection(Sender):
    """A zmq connection to a :class:`ChannelServer` that many streams send through.

    Parameters
    ----------
    address : str
        The server's ``tcp://host:port``.
    key : bytes
        The search's key.
    heartbeat : float
        Seconds of silence of a stream after which a heartbeat is sent for it.
    resend_after : float
        Seconds without any reply from the server, while messages wait for their
        acknowledgement, after which everything unacknowledged is re-sent on a new socket
        (backing off up to 8 times as long while it stays silent, so that a lagging server
        is not flooded with copies). A stream the server handled but left unacknowledged
        is re-sent at once.
    idle_close : float or None
        Close after this many seconds without a stream; None: only by :meth:`close`.
    """

    def __init__(self, address: str, key: bytes, *, heartbeat: float = 2.0,
                 resend_after: float = 2.0, idle_close: float | None = None) -> None:
        if heartbeat <= 0 or resend_after <= 0:
            raise ChannelError(f"heartbeat and resend_after must be positive seconds, got "
                               f"{heartbeat=} and {resend_after=}.")
        self.address = address
        # This end signs with the key of frames to the driver and checks replies with the other.
        self._key, self._reply_key = direction_keys(key)
        self._heartbeat = heartbeat
        self._resend_after = resend_after
        self._idle_close = idle_close
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._streams: dict[StreamKey, Stream] = {}
        self._ready: dict[StreamKey, None] = {}  # streams with unsent messages, in order
        self._inflight: dict[StreamKey, None] = {}  # streams with messages sent, not acked
        self._frames = 0  # frames sent: the next one's number
        self._error: ChannelError | None = None
        self._closing = False
        self._close_deadline = 0.0
        self._woken = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"kale-channel-{address}")
        self._thread.start()

    # --- streams ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection is closing or closed (it takes no new streams)."""
        return self._closing or not self._thread.is_alive()

    def streams(self) -> int:
        """Return the number of streams open on this connection."""
        with self._lock:
            return len(self._streams)

    def open(self, key: StreamKey) -> Stream:
        """Open the stream ``key`` on this connection."""
        self._check_usable()
        with self._lock:
            if self._closing:
                raise ChannelError(f"This channel connection to {self.address} is closed.")
            if key in self._streams:
                raise ChannelError(
                    f"Trial {key[0]} (attempt {key[1]}, rank {key[2]}) already has an open "
                    "stream on this process's metric channel: close its client first.")
            stream = self._streams[key] = Stream(key, threading.Condition(self._lock))
            return stream

    def send(self, stream: Stream, kind: str, data: Mapping[str, Any], *, block: bool,
             timeout: float | None) -> Reply:
        """Queue one message of ``stream``; see :meth:`ChannelClient.send`."""
        self._check_usable()
        body = encode_body(kind, time.time(), data)
        with self._lock:
            if stream.closed or self._closing:
                raise ChannelError(f"This channel client to {self.address} is closed.")
            seq = stream.next_seq
            stream.next_seq += 1
            stream.pending.append((seq, with_seq(seq, body)))
            self._ready[stream.key] = None
            self._wake()
        if block:
            return self.wait_acked(stream, seq, timeout)
        with self._lock:
            return stream.decision

    def decision(self, stream: Stream) -> Reply:
        """Return the latest reply the driver sent to ``stream``."""
        with self._lock:
            return stream.decision

    def flush(self, stream: Stream, timeout: float | None) -> Reply:
        """Wait until every message of ``stream`` is acknowledged; return the latest reply."""
        self._check_usable()
        with self._lock:
            last = stream.next_seq - 1
        return self.wait_acked(stream, last, timeout)

    def wait_acked(self, stream: Stream, seq: int, timeout: float | None) -> Reply:
        """Wait until ``seq`` of ``stream`` is acknowledged; return the reply."""
        with stream.cond:
            done = stream.cond.wait_for(lambda: (stream.acked >= seq or self._error is not None
                                                 or not self._thread.is_alive()), timeout)
            if self._error is not None:
                raise self._error
            if not done or stream.acked < seq:
                raise ChannelError(
                    f"No acknowledgement from the metric server at {self.address} for message "
                    f"{seq} of trial {stream.key[0]} within {timeout} s: the search driver "
                    "is gone or unreachable. The message stays queued and is re-sent."
                )
            return stream.decision

    def close_stream(self, stream: Stream, timeout: float) -> None:
        """Wait up to ``timeout`` s for the acks of ``stream``'s queued messages; close it."""
        deadline = time.monotonic() + timeout
        with stream.cond:
            stream.cond.wait_for(lambda: (not stream.pending or self._error is not None
                                          or not self._thread.is_alive()),
                                 max(0.0, deadline - time.monotonic()))
            stream.closed = True
            lost = len(stream.pending)
            if self._streams.get(stream.key) is stream:
                del self._streams[stream.key]
                self._ready.pop(stream.key, None)
                self._inflight.pop(stream.key, None)
        if lost:
            logger.warning("Closed the metric channel to %s with %d unacknowledged messages "
                           "of trial %d (attempt %d, rank %d)", self.address, lost, *stream.key)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting up to ``timeout`` s for acks), then stop."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._wake()
        if os.getpid() == self._pid:
            self._thread.join()
        with self._lock:
            lost = sum(len(s.pending) for s in self._streams.values())
        if lost:
            logger.warning("Closed the metric channel to %s with %d unacknowledged messages",
                           self.address, lost)
        self._close_pipe()

    # --- caller side -----------------------------------------------------------------

    def _check_usable(self) -> None:
        if os.getpid() != self._pid:
            raise ChannelError("A ChannelClient cannot be used in a forked child process: its "
                               "sender thread stayed in the parent. Create one per process.")
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:  # caller holds self._lock
        if not self._woken:
            self._woken = True
            os.write(self._wake_w, b"x")

    def _retire_idle(self) -> bool:
        return _retire(self)

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):  # closed by the thread that retired it
                os.close(fd)

# --- the connections this process shares ---------------------------------------------

_shared: dict[tuple[str, bytes], Connection] = {}
_shared_lock = threading.Lock()


def open_shared(address: str, key: bytes, stream: StreamKey) -> tuple[Connection, Stream]:
    """Open ``stream`` on this process's connection to ``address`` (one per address and key)."""
    with _shared_lock:
        conn = _shared.get((address, key))
        if conn is None or conn.closed:
            conn = _shared[(address, key)] = Connection(address, key, idle_close=IDLE_CLOSE)
        return conn, conn.open(stream)


def shared_connections() -> list[Connection]:
    """Return this process's open shared connections."""
    with _shared_lock:
        return [conn for conn in _shared.values() if not conn.closed]


def _retire(conn: Connection) -> bool:
    """Close an idle shared connection unless a stream was opened on it meanwhile."""
    with _shared_lock, conn._lock:
        if conn._streams:
            return False
        conn._closing = True
        for address_key, shared in list(_shared.items()):
            if shared is conn:
                del _shared[address_key]
        return True


def _close_all() -> None:
    """At exit: send what the shared connections hold (a few seconds at most)."""
    with _shared_lock:
        conns = list(_shared.values())
        _shared.clear()
    for conn in conns:
        conn.close(timeout=5.0)


def _after_fork() -> None:
    # The parent's connections and their threads stay in the parent.
    global _shared_lock
    _shared_lock = threading.Lock()
    _shared.clear()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork)
