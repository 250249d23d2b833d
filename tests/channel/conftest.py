"""Fixtures for the metric channel tests: a real server on loopback and a collecting handler."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kale_ext.channel import ChannelServer, Message, StreamKey, new_key
from kale_ext.trial import Decision

PROCS = Path(__file__).with_name("_procs.py")


class Collector:
    """A handler that keeps every delivered message and returns preset decisions."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.decide: Callable[[Message], Decision | None] = lambda m: None
        self._cond = threading.Condition()

    def __call__(self, batch: list[Message]) -> dict[int, dict[str, Any]]:
        decisions = {}
        for m in batch:
            decision = self.decide(m)
            if decision is not None:
                decisions[m.trial] = decision.to_dict()
        with self._cond:
            self.messages.extend(batch)
            self._cond.notify_all()
        return decisions

    def stream(self, key: StreamKey, kind: str | None = "report") -> list[Message]:
        with self._cond:
            return [m for m in self.messages
                    if m.stream == key and (kind is None or m.kind == kind)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)


@pytest.fixture
def key() -> bytes:
    return new_key()


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def server(key: bytes, collector: Collector) -> Iterator[ChannelServer]:
    with ChannelServer(key, collector, host="127.0.0.1") as srv:
        yield srv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(*args: str) -> subprocess.Popen[str]:
    """Run tests/channel/_procs.py with ``args`` in a new Python process."""
    return subprocess.Popen([sys.executable, str(PROCS), *args], stdout=subprocess.PIPE,
                            text=True)
