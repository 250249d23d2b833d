"""The metric channel: trials report to the search driver over authenticated zmq.

Backend independent, so the same ``report()`` works in a Dask task, an ipyparallel
engine, every rank of a distributed trial or a plain ``srun`` job. Frames are JSON
signed with HMAC-SHA256 under a per-search key; messages are ordered per
(trial, attempt, rank), acknowledged once durable, re-sent after a reconnect, and
batched. The trials a worker process runs share one connection (one socket and one
sender thread), and any message of a trial is a sign of its life. Each acknowledgement
carries the driver's reply to the trial, a plain JSON object that the trial runtime
reads as a decision (continue, stop, prune, pause).

Which address of this host the workers reach (the channel's, and a cluster's scheduler
or controller) is chosen by the helpers of :mod:`._hosts`: ``interfaces``,
``resolve_host``, ``route_address`` and ``reachable_address``.
"""

from __future__ import annotations

from kale_ext.channel._client import ChannelClient
from kale_ext.channel._connection import Connection, shared_connections
from kale_ext.channel._hosts import (
    channel_host,
    describe_interfaces,
    interfaces,
    is_loopback,
    reachable_address,
    resolve_host,
    route_address,
)
from kale_ext.channel._server import ChannelServer
from kale_ext.channel._wire import (
    ENV_ADDRESS,
    ENV_KEY,
    ChannelInfo,
    Message,
    Reply,
    StreamKey,
    new_key,
)

__all__ = [
    "ENV_ADDRESS",
    "ENV_KEY",
    "ChannelClient",
    "ChannelInfo",
    "ChannelServer",
    "Connection",
    "Message",
    "Reply",
    "StreamKey",
    "channel_host",
    "describe_interfaces",
    "interfaces",
    "is_loopback",
    "new_key",
    "reachable_address",
    "resolve_host",
    "route_address",
    "shared_connections",
]
