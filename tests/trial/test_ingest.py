"""Ingest: from channel messages to the store and the trial events, each applied once."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kale_ext.channel import Message
from kale_ext.trial import Action, Decision, Ingest, TrialEvents, TrialState, open_store

DEFINITION = {"name": "ingest", "metric": "acc", "mode": "max"}


class Recorder(TrialEvents):
    """Counts every event; its report handler fails on the first report it sees."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_reports = 1

    def attempt(self, trial: int) -> int | None:
        return 0

    def on_start(self, message: Message) -> None:
        self.calls.append(("start", message.seq))

    def on_checkpoint(self, trial: int, step: int | None, path: str) -> None:
        self.calls.append(("checkpoint", path))

    def on_report(self, message: Message) -> Decision | None:
        self.calls.append(("report", message.seq))
        if self.fail_reports:
            self.fail_reports -= 1
            raise ValueError(f"cannot take report {message.seq}")
        return None

    def on_control(self, data: dict[str, Any]) -> Decision:
        self.calls.append(("control", data["action"]))
        return Decision(Action.CONTINUE, "done")


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "s.kale.sqlite") as s:
        s.create_search(DEFINITION)
        s.add_trial(0, {})
        s.transition(0, TrialState.RUNNING, "submitted")
        yield s


def _batch() -> list[Message]:
    return [Message(0, 0, 0, 0, "start", 1.0, {"host": "h"}),
            Message(0, 0, 0, 1, "checkpoint", 2.0, {"step": 1, "path": "/tmp/c1"}),
            Message(0, 0, 0, 2, "report", 3.0, {"epoch": 1, "acc": 0.5}),
            Message(0, 0, 0, 3, "control", 4.0, {"action": "restart", "trial": 1})]


def test_a_resent_batch_applies_start_checkpoint_and_control_once(store, caplog):
    events = Recorder()
    ingest = Ingest(store, events)
    with caplog.at_level(logging.ERROR):
        first = ingest(_batch())  # the report handler fails: logged, not raised
    assert "cannot take report 2" in caplog.text
    ingest(_batch())  # the same frame again, as a client re-sends it
    assert [c for c in events.calls if c[0] != "report"] == [
        ("start", 0), ("checkpoint", "/tmp/c1"), ("control", "restart")]
    assert [c for c in events.calls if c[0] == "report"] == [("report", 2)]
    assert [c.path for c in store.checkpoints()] == ["/tmp/c1"]
    assert len(store.metrics()) == 1
    assert first[0]["reason"] == "done"


def test_applied_state_survives_a_new_ingest_on_the_same_store(store):
    Ingest(store, Recorder())(_batch()[:3])
    events = Recorder()
    Ingest(store, events)(_batch()[:3])  # a driver resumed on the store: re-sent frames
    assert events.calls == []
    assert len(store.checkpoints()) == 1
