"""The driver's end of the metric channel: a zmq ROUTER served by one background thread."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import zmq

from kale_ext._errors import ChannelError, ConfigError, StoreError
from kale_ext.channel._hosts import ANY, channel_host, reachable_address
from kale_ext.channel._wire import (
    HEARTBEAT_SEQ,
    MAX_FRAME,
    REJECT,
    Message,
    Reply,
    StreamKey,
    decode_frame,
    direction_keys,
    encode_ack,
    encode_acks,
    sign,
    verify,
)

logger = logging.getLogger(__name__)

Handler = Callable[[list[Message]], "Mapping[Any, Reply] | None"]

# Frames taken off the socket before the handler is called once for all of them: one
# store transaction per drain rather than per frame is what makes batching pay.
_MAX_FRAMES_PER_DRAIN = 256
_POLL_MS = 500

MAX_FAILURES = 3
"""Times the handler may fail on the same messages before they are dropped and logged."""


class ChannelServer:
    """Receives reports from trials, hands new ones to ``handler``, acknowledges them.

    Parameters
    ----------
    key : bytes
        The search's key; frames not signed with it are rejected and logged.
    handler : callable
        Called on the server's own thread with each batch of new, in-order messages
        (re-sent duplicates removed). It must persist them before returning, since the
        acknowledgement sent afterwards tells the worker they are durable, and returns
        the replies it wants to send, by trial (trials left out keep theirs). If it
        raises, nothing in the batch is acknowledged and the workers re-send; messages
        it fails on :data:`MAX_FAILURES` times are dropped (logged, then acknowledged),
        except when it raises :class:`kale.StoreError`: the store is at fault then.
    host : str, optional
        Address to bind and advertise; default :func:`channel_host`.
    port : int
        TCP port; 0 picks a free one.
    delivered : mapping, optional
        Last delivered ``seq`` per (trial, attempt, rank), from the store of a resumed
        search, so that messages re-sent to the new server are not delivered twice.

    Notes
    -----
    Replies are sticky: once set for a trial (by :meth:`set_decision` or the handler)
    one goes out in every acknowledgement to that trial until replaced; an empty reply
    clears it. Replace a stop before restarting a paused or exploited trial.
    """

    def __init__(self, key: bytes, handler: Handler, *, host: str | None = None,
                 port: int = 0, delivered: Mapping[StreamKey, int] | None = None) -> None:
        if not isinstance(key, bytes) or len(key) < 16:
            raise ConfigError("The channel key must be at least 16 bytes; create one with "
                              "kale_ext.channel.new_key().")
        # Frames to the driver are signed with one key, replies with the other.
        self._key, self._reply_key = direction_keys(key)
        self._handler = handler
        self._delivered: dict[StreamKey, int] = dict(delivered or {})
        self._decisions: dict[int | tuple[int, int], dict[str, Any]] = {}
        self._last_seen: dict[StreamKey, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._rejected = 0
        self._failures: dict[tuple[StreamKey, int], int] = {}
        self._beats: dict[StreamKey, float] = {}  # worker time of each stream's last heartbeat
        self._ended: dict[StreamKey, dict[str, Any]] = {}  # the delivered end messages' data
        self._peers: dict[bytes, float] = {}  # server time each connection was last heard
        # Server time before which every frame that reached the socket has been handled:
        # how far behind the ingest is (see caught_up()).
        self._caught_up = time.time()
        self._wake_r, self._wake_w = os.pipe()

        host = host or channel_host()
        bind_host = "*" if host in ANY else host
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        # A worker that reconnects under the same identity replaces its old pipe.
        self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # zmq drops a larger frame and its peer before it is read into memory.
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)
        try:
            self._socket.bind(f"tcp://{bind_host}:{port or '*'}")
        except zmq.ZMQError as e:
            self._socket.close()
            self._context.term()
            raise ChannelError(
                f"Cannot bind the metric channel to {host}:{port or '*'}: {e}. Pick another "
                "port, or set kale.channel-host to an address of this machine."
            ) from e
        endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(endpoint.rsplit(":", 1)[1])
        # Bound to every interface: advertise one that workers on other hosts reach.
        advertised = reachable_address() if bind_host == "*" else host
        self.address = f"tcp://{advertised}:{self.port}"

    # --- public API ------------------------------------------------------------------

    def start(self) -> None:
        """Start serving on a background thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._serve, name="kale-channel-server",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port. Unacknowledged workers keep re-sending."""
        if self._closing:
            return
        self._closing = True
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join()
        else:
            self._socket.close()
        self._context.term()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> ChannelServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def set_decision(self, trial: int | tuple[int, int], reply: Reply) -> None:
        """Tell ``trial`` something; it hears it in the ack of its next message or heartbeat.

        ``trial`` may be a (trial, attempt) pair: a reply for that attempt alone (one the
        driver superseded), which it hears instead of the trial's.
        """
        with self._lock:
            self._set_decision(trial, reply)

    def decision(self, trial: int) -> dict[str, Any]:
        """Return the reply ``trial`` hears now; empty when there is none."""
        with self._lock:
            return dict(self._decisions.get(trial, {}))

    def last_seen(self) -> dict[StreamKey, float]:
        """Server time of the last authenticated message of each (trial, attempt, rank)."""
        with self._lock:
            return dict(self._last_seen)

    def delivered(self) -> dict[StreamKey, int]:
        """Last delivered seq of each (trial, attempt, rank)."""
        with self._lock:
            return dict(self._delivered)

    def ended(self, stream: StreamKey) -> dict[str, Any] | None:
        """Return the data of the delivered ``end`` message of ``stream``, else None.

        That is the outcome of its trial's function, which returned: handled, with every
        message of the stream before it, by the handler.
        """
        with self._lock:
            return self._ended.get(stream)

    def caught_up(self) -> float:
        """Server time (``time.time()``) before which every frame received was handled.

        The messages that reached the server before it are in :meth:`last_seen`; a
        silence is only known up to it. ``time.time() - caught_up()`` is the ingest's
        backlog: at most a poll interval plus one drain when the server keeps up,
        growing while it is behind (a slow handler, a driver holding its lock).
        """
        return self._caught_up

    def peers(self, within: float = 60.0) -> int:
        """Count the connections (worker processes, control clients) heard in ``within`` s."""
        cutoff = time.time() - within
        with self._lock:
            return sum(1 for seen in self._peers.values() if seen >= cutoff)

    # --- the server thread -----------------------------------------------------------

    def _set_decision(self, trial: int | tuple[int, int], reply: Reply) -> None:
        if reply:
            self._decisions[trial] = dict(reply)
        else:
            self._decisions.pop(trial, None)

    def _reply_for(self, stream: StreamKey) -> Mapping[str, Any]:
        # A reply set for one attempt (superseded by the driver) wins over the trial's.
        return self._decisions.get(stream[:2]) or self._decisions.get(stream[0], {})

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._closing:
                events = dict(poller.poll(_POLL_MS))
                if self._socket not in events:
                    self._caught_up = time.time()  # nothing was waiting
                    continue
                started = time.time()
                frames = []
                for _ in range(_MAX_FRAMES_PER_DRAIN):
                    try:
                        frames.append(self._socket.recv_multipart(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                try:
                    self._process(frames)
                except Exception:  # never let one bad batch end the server
                    logger.exception("Metric channel failed to process %d frames", len(frames))
                if len(frames) < _MAX_FRAMES_PER_DRAIN:  # everything waiting was read
                    self._caught_up = started
        finally:
            self._socket.close()

    def _process(self, batch: list[list[bytes]]) -> None:
        now = time.time()
        groups: dict[StreamKey, list[Message]] = {}  # new messages by stream, in order
        tentative: dict[StreamKey, int] = {}
        # Ordered sets: the streams to acknowledge to each sender, one reply each; a
        # frame of several streams gets one reply for all of them.
        replies: dict[tuple[bytes, StreamKey], None] = {}
        multi: dict[bytes, dict[StreamKey, None]] = {}
        numbers: dict[bytes, int] = {}  # the last frame of each sender of several streams
        for frames in batch:
            if len(frames) != 3 or not verify(self._key, frames[1], frames[2]):
                self._reject(frames)
                continue
            identity, _, payload = frames
            try:
                parts, number = decode_frame(payload)
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                logger.warning("Dropped a malformed metric channel frame: %s", e)
                continue
            if len(self._peers) > 100_000:  # keep memory bounded against a flood
                self._peers.clear()
            self._peers[identity] = now
            if number is not None:
                numbers[identity] = max(number, numbers.get(identity, -1))
                multi.setdefault(identity, {})
            for stream, base, messages in parts:
                self._take(stream, base, messages, groups, tentative)
                if number is not None:
                    multi[identity][stream] = None
                else:
                    replies[(identity, stream)] = None
        if not replies and not multi:
            return
        try:
            decisions = self._handle(groups)
        except StoreError:
            logger.exception("The store cannot take the metric channel's %d messages; they "
                             "are not acknowledged", sum(map(len, groups.values())))
            return
        with self._lock:
            for stream in decisions.pop(None, ()):  # streams whose messages failed
                tentative.pop(stream, None)
            for stream, last in tentative.items():
                # Only news is a sign of life: not a frame replayed or re-sent.
                if groups.get(stream) or last > self._delivered.get(stream, -1):
                    self._last_seen[stream] = now
            for stream, group in groups.items():
                if stream in tentative:
                    for m in group:
                        if m.kind == "end":
                            self._ended[stream] = m.data
            self._delivered.update(tentative)
            for trial, decision in decisions.items():
                self._set_decision(trial, decision)
            acks = [(identity, encode_ack(stream, self._delivered[stream],
                                          self._reply_for(stream)))
                    for identity, stream in replies if stream in tentative]
            for identity, streams in multi.items():
                done = [(stream, self._delivered[stream], self._reply_for(stream))
                        for stream in streams if stream in tentative]
                # Sent even when empty: it tells the sender which frames were handled.
                acks.append((identity, encode_acks(numbers[identity], done)))
        for identity, payload in acks:
            # A peer that is gone or whose queue is full re-sends later.
            with contextlib.suppress(zmq.ZMQError):
                self._socket.send_multipart(
                    [identity, sign(self._reply_key, payload), payload], zmq.NOBLOCK)

    def _take(self, stream: StreamKey, base: int, messages: list[Message],
              groups: dict[StreamKey, list[Message]], tentative: dict[StreamKey, int]) -> None:
        """Add the new messages of one stream's batch to ``groups``, in order."""
        last = tentative.get(stream, self._delivered.get(stream, -1))
        # Everything below base was acknowledged by some server, so is durable.
        last = max(last, base - 1)
        new = groups.setdefault(stream, [])
        for message in messages:
            if message.seq == HEARTBEAT_SEQ:
                # A replayed (or reordered) heartbeat is no sign of life.
                if message.time > self._beats.get(stream, float("-inf")):
                    self._beats[stream] = message.time
                    new.append(message)
            elif message.seq == last + 1:
                new.append(message)
                last = message.seq
            elif message.seq > last + 1:
                break  # a gap: drop the rest; the client re-sends from the ack
        tentative[stream] = last

    def _handle(self, groups: dict[StreamKey, list[Message]]) -> dict[Any, Any]:
        """Call the handler on the new messages; return its replies by trial.

        When it raises, each stream is tried on its own, so one stream's bad messages do
        not hold back the others; a stream that fails is not acknowledged (the client
        re-sends), and after :data:`MAX_FAILURES` failures of the same messages they are
        dropped, logged and acknowledged. The streams left unacknowledged are under the
        key None. A :class:`StoreError` (the store, not the messages, is at fault) is
        raised at once and never drops anything.
        """
        new = [m for group in groups.values() for m in group]
        if not new:
            return {}
        try:
            return dict(self._handler(new) or {})
        except StoreError:
            raise
        except Exception as e:
            if len(groups) == 1:
                return self._failed(next(iter(groups.items())), e)
        decisions: dict[Any, Any] = {}
        for stream, group in groups.items():
            if not group:
                continue
            try:
                decisions.update(self._handler(group) or {})
            except StoreError:
                raise
            except Exception as e:
                failed = self._failed((stream, group), e)
                decisions.setdefault(None, []).extend(failed.get(None, ()))
        return decisions

    def _failed(self, item: tuple[StreamKey, list[Message]], error: Exception) -> dict[Any, Any]:
        stream, group = item
        seqs = [m.seq for m in group if m.seq != HEARTBEAT_SEQ]
        key = (stream, seqs[0] if seqs else HEARTBEAT_SEQ)
        if len(self._failures) > 10_000:  # keep memory bounded against a flood
            self._failures.clear()
        count = self._failures[key] = self._failures.get(key, 0) + 1
        if count < MAX_FAILURES:
            logger.warning("Metric channel handler failed (%d of %d) on %d messages of trial %d "
                           "(attempt %d, rank %d): %s: %s; they are not acknowledged and will "
                           "be re-sent", count, MAX_FAILURES, len(group), *stream,
                           type(error).__name__, error)
            return {None: [stream]}
        del self._failures[key]
        logger.error("Dropped %d messages of trial %d (attempt %d, rank %d), seq %s: the "
                     "handler failed on them %d times, last with %s: %s", len(group), *stream,
                     f"{seqs[0]}..{seqs[-1]}" if seqs else "none (heartbeat)", MAX_FAILURES,
                     type(error).__name__, error)
        return {}

    def _reject(self, frames: list[bytes]) -> None:
        self._rejected += 1
        # Log the first few and then sparsely, so a misconfigured worker cannot flood logs.
        if self._rejected <= 5 or self._rejected % 1000 == 0:
            logger.warning("Metric channel rejected a frame with a bad signature or shape "
                           "(%d so far): a worker is using a different key", self._rejected)
        with contextlib.suppress(zmq.ZMQError):
            self._socket.send_multipart([frames[0], b"", REJECT], zmq.NOBLOCK)
