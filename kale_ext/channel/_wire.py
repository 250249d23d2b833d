"""Message shapes, JSON conversion and HMAC signing of the metric channel's frames.

Every zmq message on the channel has two frames: ``[signature, payload]`` where
``signature = HMAC-SHA256(direction key, payload)`` and ``payload`` is UTF-8 JSON. Each
direction has its own key derived from the search's key (:func:`direction_keys`), so a
frame captured on its way to the driver is rejected by a worker and the other way
round. No pickle ever crosses the wire, so a peer with a wrong key can waste cycles but
never run code. Frames are at most :data:`MAX_FRAME` bytes (zmq's ``MAXMSGSIZE`` on
both ends) and one message at most :data:`MAX_MESSAGE`.

A client's frame carries one batch of messages of one (trial, attempt, rank) stream::

    {"v": 1, "trial": 3, "attempt": 0, "rank": 0, "base": 17,
     "msgs": [[17, "report", 1712.5, {"epoch": 2, "loss": 0.31}], [-1, "heartbeat", ...]]}

``base`` is the lowest sequence number the client has not seen acknowledged: every
message below it was acknowledged (so is durable), which lets a restarted server that
was not seeded with ``delivered`` pick up the stream without waiting for a gap to fill.
Heartbeats carry ``seq = -1``: they are not sequenced, stored or re-sent; the server
takes a heartbeat only when its time is later than the stream's last one, so a captured
heartbeat replayed later does not keep a dead trial alive.

The server's reply acknowledges cumulatively and carries the trial's decision::

    {"v": 1, "trial": 3, "attempt": 0, "rank": 0, "ack": 18, "decision": {...}}

A worker process's connection, shared by all the trials it runs, multiplexes their
streams: its frames are numbered (``n``) and carry batches of several streams, each as
above without ``v``; the server answers the frames of one sender that it read together
with one reply acknowledging all their streams, naming the last frame it handled::

    {"v": 1, "n": 41, "batches": [{"trial": 3, "attempt": 0, "rank": 0, "base": 17,
                                   "msgs": [...]}, {"trial": 4, ...}]}
    {"v": 1, "n": 41, "acks": [[3, 0, 0, 18, {...}], [4, 0, 0, 2, {}]]}

A stream of a frame the server handled but left unacknowledged (its messages failed, or
came after a gap) is re-sent at once; the rest only when the server answers nothing.

A frame whose signature does not verify is answered with ``[b"", b"reject"]`` so a
client with the wrong key fails fast with a clear error instead of waiting forever.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale_ext import registry
from kale_ext._errors import ChannelError

VERSION = 1
KINDS = ("report", "heartbeat", "start", "end", "checkpoint", "control")
REJECT = b"reject"
HEARTBEAT_SEQ = -1

MAX_MESSAGE = 4 * 2**20
"""Bytes of one encoded message (a report, start, end...): far above any real report."""
MAX_FRAME = 64 * 2**20
"""Bytes of one zmq frame, set as ``zmq.MAXMSGSIZE`` on both ends; batches stay below it."""
_UP = b"kale metric channel: worker to driver"
_DOWN = b"kale metric channel: driver to worker"
_INT64 = 2**63

ENV_ADDRESS = "KALE_CHANNEL_ADDRESS"
ENV_KEY = "KALE_CHANNEL_KEY"

StreamKey = tuple[int, int, int]
"""(trial, attempt, rank): one ordered stream of messages."""

Reply = Mapping[str, Any]
"""The driver's reply to a trial, carried in every acknowledgement as a JSON object (the
trial runtime reads it as a decision); empty when the driver has said nothing."""


@dataclass(frozen=True)
class Message:
    """One report, heartbeat, start or end message, as the driver sees it.

    Attributes
    ----------
    trial : int
        Trial number in the search.
    attempt : int
        Retry/restart count of the trial; a new attempt restarts ``seq`` at 0.
    rank : int
        Rank within a distributed trial (0 for a plain trial).
    seq : int
        Position in the (trial, attempt, rank) stream: 0, 1, 2, ... without gaps,
        delivered in order exactly once. Heartbeats are not sequenced and carry -1.
    kind : str
        ``"report"``, ``"heartbeat"``, ``"start"`` or ``"end"``.
    time : float
        Worker wall clock when the message was sent.
    data : dict
        Metrics for a report; host/pid/worker for a start;
        ``{"status": "ok" | "error", "traceback": ...}`` for an end.
    """

    trial: int
    attempt: int
    rank: int
    seq: int
    kind: str
    time: float
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> StreamKey:
        return (self.trial, self.attempt, self.rank)

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "attempt": self.attempt, "rank": self.rank,
                "seq": self.seq, "kind": self.kind, "time": self.time, "data": self.data}


def new_key() -> bytes:
    """Return a fresh random per-search key (32 bytes) for signing channel frames."""
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class ChannelInfo:
    """What a worker needs to report to a search: the server address and the key.

    Serialisable with :meth:`to_dict`, passed through environment variables with
    :meth:`to_env` / :meth:`from_env` (so a plain ``srun`` job can report), and kept on
    disk with :meth:`save` in a file only its owner can read.
    """

    address: str
    key_hex: str

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.key_hex)

    @classmethod
    def create(cls, address: str, key: bytes) -> ChannelInfo:
        return cls(address, key.hex())

    def to_dict(self) -> dict[str, str]:
        return {"address": self.address, "key_hex": self.key_hex}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelInfo:
        try:
            info = cls(str(data["address"]), str(data["key_hex"]))
            info.key  # noqa: B018 - validates the hex now rather than at first use
        except (KeyError, ValueError) as e:
            raise ChannelError(
                f"Channel info must have 'address' and a hex 'key_hex', got {dict(data)!r}."
            ) from e
        return info

    def to_env(self) -> dict[str, str]:
        return {ENV_ADDRESS: self.address, ENV_KEY: self.key_hex}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ChannelInfo:
        env = os.environ if environ is None else environ
        missing = [name for name in (ENV_ADDRESS, ENV_KEY) if not env.get(name)]
        if missing:
            raise ChannelError(
                f"Environment variable(s) {', '.join(missing)} not set: this process was not "
                "started by a kale search. Export both from ChannelInfo.to_env() in the job."
            )
        return cls.from_dict({"address": env[ENV_ADDRESS], "key_hex": env[ENV_KEY]})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` as JSON, created with mode 0600 (it holds the key)."""
        path = Path(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ChannelInfo:
        """Read a file written by :meth:`save`; refused when others could have written it."""
        registry.guard_file(path, what="Channel file")
        with open(path) as f:
            return cls.from_dict(json.load(f))


# --- JSON conversion ---------------------------------------------------------------

_PLAIN = (str, int, float, bool, type(None))


def _to_json(value: Any, name: str) -> Any:
    """``value`` as plain JSON types; numpy/torch scalars become int/float/bool."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if str(k) in out:
                raise ChannelError(
                    f"Metric {name!r} has keys {k!r} and {str(k)!r}, which are the same name "
                    "in JSON: the keys of a dict must stay distinct as strings.")
            out[str(k)] = _to_json(v, f"{name}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(v, f"{name}[{i}]") for i, v in enumerate(value)]
    # numpy scalars, 0-d arrays, one-element torch tensors: all have .item(); checked by
    # module so that neither library is imported here.
    module = type(value).__module__.split(".")[0]
    if module in ("numpy", "torch") and getattr(value, "ndim", 0) == 0 and hasattr(value, "item"):
        item = value.item()
        if isinstance(item, _PLAIN):
            return item
    shape = getattr(value, "shape", None)
    hint = f" of shape {tuple(shape)}" if shape is not None else ""
    raise ChannelError(
        f"Metric {name!r} has type {type(value).__module__}.{type(value).__qualname__}{hint}, "
        "which cannot be sent as JSON: a metric must be a number, string, bool, None, or a "
        "list/dict of them. Convert tensors and arrays with float(x) or x.item()."
    )


def encode_body(kind: str, time: float, data: Mapping[str, Any]) -> bytes:
    """Encode a message without its seq, ``[kind, time, data]``, as JSON bytes.

    numpy/torch scalars are converted; anything else raises ChannelError, so the error
    surfaces in the trial's ``report()`` call. :func:`with_seq` completes the message.
    """
    if kind not in KINDS:
        raise ChannelError(f"Message kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    if not isinstance(data, Mapping):
        raise ChannelError(f"Message data must be a dict, got {type(data).__name__}.")
    for k in data:
        if not isinstance(k, str):
            raise ChannelError(f"Metric names must be strings, but got {k!r} "
                               f"({type(k).__name__}); name it {str(k)!r} instead.")
    plain = {k: _to_json(v, k) for k, v in data.items()}
    # allow_nan: a diverged loss is reported as NaN/inf; both ends are Python's json.
    body = json.dumps([kind, time, plain], allow_nan=True, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE:
        names = ", ".join(repr(k) for k in list(plain)[:5]) + (", ..." if len(plain) > 5 else "")
        raise ChannelError(
            f"A {kind} of {len(plain)} metrics ({names}) is {len(body)} bytes as JSON, but a "
            f"message must be at most {MAX_MESSAGE} bytes. Report fewer or smaller values; "
            "keep arrays and tables in files.")
    return body


def with_seq(seq: int, body: bytes) -> bytes:
    """``[seq, kind, time, data]`` from a body of :func:`encode_body`."""
    return b"[%d," % seq + body[1:]


def encode_part(stream: StreamKey, base: int, messages: list[bytes]) -> bytes:
    """Return one stream's batch as it stands in a frame of several (no ``v``)."""
    trial, attempt, rank = stream
    head = (f'{{"trial":{trial},"attempt":{attempt},"rank":{rank},'
            f'"base":{base},"msgs":[').encode()
    return head + b",".join(messages) + b"]}"


def encode_batch(stream: StreamKey, base: int, messages: list[bytes]) -> bytes:
    """Return a frame of one stream's batch."""
    return b'{"v":%d,' % VERSION + encode_part(stream, base, messages)[1:]


def encode_frame(number: int, parts: list[bytes]) -> bytes:
    """Return frame ``number`` of several streams' batches, each from :func:`encode_part`."""
    return b'{"v":%d,"n":%d,"batches":[' % (VERSION, number) + b",".join(parts) + b"]}"


def _field(body: Mapping[str, Any], name: str, low: int = 0) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < _INT64:
        raise ValueError(f"field {name!r} must be an integer from {low} to 2**63-1, "
                         f"got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


Batch = tuple[StreamKey, int, list[Message]]
"""One stream's part of a frame: the stream, its base and its messages."""


def decode_frame(payload: bytes) -> tuple[list[Batch], int | None]:
    """Parse a client frame into its batches and its number (None: a one-stream frame).

    Raises
    ------
    ValueError
        Naming the field and the rule it broke.
    """
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, or nested too deep
        raise ValueError(f"the payload must be UTF-8 JSON of at most a few levels: {e}") from e
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise ValueError(f"field 'v' must be {VERSION} in a JSON object: not a version "
                         f"{VERSION} channel frame")
    if "batches" not in body:
        return [_decode_part(body)], None
    parts = body["batches"]
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise ValueError(f"field 'batches' must be a list of JSON objects, got {_short(parts)}")
    return [_decode_part(part) for part in parts], _field(body, "n")


def _decode_part(body: dict[str, Any]) -> Batch:
    # Control commands use negative trial numbers (one per command), never a trial's.
    trial = _field(body, "trial", -_INT64)
    attempt, rank, base = _field(body, "attempt"), _field(body, "rank"), _field(body, "base")
    msgs = body.get("msgs")
    if not isinstance(msgs, list):
        raise ValueError(f"field 'msgs' must be a list, got {_short(msgs)}")
    messages = []
    for i, item in enumerate(msgs):
        if not isinstance(item, list) or len(item) != 4:
            raise ValueError(f"field 'msgs[{i}]' must be [seq, kind, time, data], "
                             f"got {_short(item)}")
        seq, kind, when, data = item
        if isinstance(seq, bool) or not isinstance(seq, int) or not -1 <= seq < _INT64:
            raise ValueError(f"field 'msgs[{i}].seq' must be an integer from -1 to 2**63-1, "
                             f"got {_short(seq)}")
        if kind not in KINDS or (seq == HEARTBEAT_SEQ) != (kind == "heartbeat"):
            raise ValueError(f"field 'msgs[{i}].kind' must be one of {', '.join(KINDS)} "
                             f"(heartbeat exactly when seq is -1), got {_short(kind)}")
        if isinstance(when, bool) or not isinstance(when, int | float) \
                or not math.isfinite(when):
            raise ValueError(f"field 'msgs[{i}].time' must be a finite number, "
                             f"got {_short(when)}")
        if not isinstance(data, dict):
            raise ValueError(f"field 'msgs[{i}].data' must be a JSON object, "
                             f"got {_short(data)}")
        messages.append(Message(trial, attempt, rank, seq, kind, float(when), data))
    return (trial, attempt, rank), base, messages


def encode_ack(stream: StreamKey, ack: int, reply: Reply) -> bytes:
    trial, attempt, rank = stream
    return json.dumps({"v": VERSION, "trial": trial, "attempt": attempt, "rank": rank,
                       "ack": ack, "decision": dict(reply)}).encode()


def encode_acks(number: int, acks: list[tuple[StreamKey, int, Reply]]) -> bytes:
    """Return one reply to frames of several streams, up to frame ``number``."""
    return json.dumps({"v": VERSION, "n": number, "acks": [[*stream, ack, dict(reply)]
                                                           for stream, ack, reply in acks]}
                      ).encode()


def decode_ack(payload: bytes) -> tuple[StreamKey, int, dict[str, Any]]:
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError("an acknowledgement must be a JSON object")
    reply = body.get("decision")
    return ((int(body["trial"]), int(body["attempt"]), int(body["rank"])), int(body["ack"]),
            dict(reply) if isinstance(reply, dict) else {})


Ack = tuple[StreamKey, int, dict[str, Any]]


def decode_acks(payload: bytes) -> tuple[int | None, list[Ack]]:
    """Parse a reply of either shape: the last frame it answers, ``(stream, ack, decision)``."""
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError("an acknowledgement must be a JSON object")
    if "acks" not in body:
        return None, [decode_ack(payload)]
    return int(body["n"]), [((int(t), int(a), int(r)), int(ack),
                             dict(reply) if isinstance(reply, dict) else {})
                            for t, a, r, ack, reply in body["acks"]]


# --- signing -------------------------------------------------------------------------

def direction_keys(key: bytes) -> tuple[bytes, bytes]:
    """Return the keys ``(up, down)`` that sign frames to the driver and to the workers."""
    return (hmac.new(key, _UP, hashlib.sha256).digest(),
            hmac.new(key, _DOWN, hashlib.sha256).digest())


def sign(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def verify(key: bytes, signature: bytes, payload: bytes) -> bool:
    return hmac.compare_digest(sign(key, payload), signature)
