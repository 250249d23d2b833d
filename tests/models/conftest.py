"""A trial context on a real metric channel, so trainables report and checkpoint for real."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kale_ext.channel import ChannelClient, ChannelServer, Message, new_key
from kale_ext.trial import Action, Decision, TrialContext
from kale_ext.trial._context import _current


@dataclass
class Trial:
    """Runs trainables as trial 0 of a search whose driver records every report."""

    checkpoint_dir: Path
    reports: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    stop_after: int | None = None  # answer STOP to the report of this epoch
    attempt: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, batch: list[Message]) -> dict[int, dict[str, Any]] | None:
        with self._lock:
            for msg in batch:
                if msg.kind == "report":
                    self.reports.append(dict(msg.data))
                elif msg.kind == "checkpoint":
                    self.checkpoints.append(dict(msg.data))
            epochs = [r.get("epoch") for r in self.reports]
        if self.stop_after is not None and self.stop_after in epochs:
            return {0: Decision(Action.STOP, "enough").to_dict()}
        return None

    def run(self, fn: Callable[[dict[str, Any]], Any], config: dict[str, Any],
            restore_from: str | None = None) -> Any:
        key = new_key()
        server = ChannelServer(key, self.handle, host="127.0.0.1")
        server.start()
        client = ChannelClient(server.address, key, trial=0, attempt=self.attempt)
        self.attempt += 1
        ctx = TrialContext(trial=0, attempt=self.attempt, rank=0, config=config,
                           checkpoint_dir=str(self.checkpoint_dir), client=client,
                           restore_from=restore_from)
        token = _current.set(ctx)
        try:
            return fn(config)
        finally:
            _current.reset(token)
            client.close()
            server.close()

    @property
    def last_checkpoint(self) -> str:
        return str(self.checkpoints[-1]["path"])


@pytest.fixture
def trial(tmp_path: Path) -> Iterator[Trial]:
    yield Trial(tmp_path / "checkpoints")
