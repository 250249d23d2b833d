"""The trial's end of the metric channel: one stream on a connection to the driver.

A :class:`ChannelClient` writes one (trial, attempt, rank) stream. ``send`` only
assigns a sequence number and queues the encoded message; the connection's sender
thread batches, sends, re-sends and reads the acks (see :mod:`._connection`). With
``shared=True`` the stream goes over this process's one connection to the search, which
all the trials the process runs share (one socket and one thread for a worker of 100
trial threads); otherwise over a connection of its own. A client does not survive
``fork``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

from kale_ext._errors import ChannelError
from kale_ext.channel._connection import Connection, open_shared
from kale_ext.channel._wire import Reply


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
        Seconds without a reply from the server, while messages wait for it, after which
        the connection reconnects with a new socket and re-sends everything unacknowledged.
    shared : bool
        Send over this process's connection to ``address`` shared by all its trials
        (whose ``heartbeat`` and ``resend_after`` are the defaults), rather than a
        connection of this client's own.
    """

    def __init__(self, address: str, key: bytes, trial: int, attempt: int = 0, rank: int = 0,
                 *, heartbeat: float = 2.0, resend_after: float = 2.0,
                 shared: bool = False) -> None:
        self.address = address
        self._stream_key = (trial, attempt, rank)
        self._owned = not shared
        if shared:
            self._conn, self._stream = open_shared(address, key, self._stream_key)
        else:
            self._conn = Connection(address, key, heartbeat=heartbeat, resend_after=resend_after)
            try:
                self._stream = self._conn.open(self._stream_key)
            except BaseException:
                self._conn.close(timeout=0)
                raise

    @property
    def connection(self) -> Connection:
        """The connection this client's stream goes over (shared ones by many clients)."""
        return self._conn

    @property
    def decision(self) -> Reply:
        """The latest reply the driver sent (empty before the first)."""
        return self._conn.decision(self._stream)

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
        return self._conn.send(self._stream, kind, data, block=block, timeout=timeout)

    def flush(self, timeout: float | None = None) -> Reply:
        """Wait until every message sent so far is acknowledged; return the latest reply."""
        return self._conn.flush(self._stream, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting up to ``timeout`` s for acks), then stop.

        A shared connection stays open for the process's other trials.
        """
        if self._stream.closed:
            return
        self._conn.close_stream(self._stream, timeout)
        if self._owned:
            self._conn.close(timeout=0)

    def __enter__(self) -> ChannelClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
