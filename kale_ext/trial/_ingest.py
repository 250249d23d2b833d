"""From the metric channel to the store.

This is the one step a search's driver and a training run share.

Every batch the channel delivers is stored first (the acknowledgement that follows tells
the workers it is durable); then the messages of each trial's current attempt are handed
to the :class:`TrialEvents` of whoever runs the trials, in order, and the decisions they
return go back with the acknowledgements.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from kale_ext.store import Store
from kale_ext.trial._checkpoints import warn_unshared
from kale_ext.trial._state import Action, Decision, TrialState

if TYPE_CHECKING:
    from kale_ext.channel import Message


def open_store(path: str | os.PathLike[str], *, readonly: bool = False,
               objective: tuple[str, str] | None = None) -> Store:
    """:meth:`kale_ext.store.Store.open` with trial states read back as :class:`TrialState`."""
    return Store.open(path, readonly=readonly, states=TrialState, objective=objective)


class TrialEvents:
    """What channel messages mean to whoever runs the trials; override what matters.

    :class:`Ingest` calls these only for messages of a trial's current attempt (see
    :meth:`attempt`): a late message of a superseded attempt is stored, not acted on.
    """

    def attempt(self, trial: int) -> int | None:
        """Return the current attempt of ``trial``; None for a trial not run here."""
        raise NotImplementedError

    def on_seen(self, message: Message) -> None:
        """Any message of the current attempt, heartbeats included, before the others."""

    def on_start(self, message: Message) -> None:
        """Handle a rank's start: ``message.data`` holds its host, pid and worker."""

    def on_checkpoint(self, trial: int, step: int | None, path: str) -> None:
        """Rank 0 saved a checkpoint (already recorded in the store)."""

    def on_report(self, message: Message) -> Decision | None:
        """Handle a report; return a decision for the trial, or None to leave its own."""
        return None

    def on_end(self, message: Message) -> None:
        """Handle a rank's end; ``message.data`` is its outcome."""

    def on_control(self, data: dict[str, Any]) -> Decision:
        """Handle a control command from another process; the answer rides on the reply."""
        return Decision(Action.CONTINUE, '{"ok": false, "error": "nothing to control here"}')

    def pending(self) -> Mapping[int, Decision]:
        """Decisions every trial must keep hearing until it ends (a stop, a pause)."""
        return {}


class Ingest:
    """The channel handler of a search or training run.

    It stores each batch, then tells ``events`` what the messages of current attempts
    mean.

    Parameters
    ----------
    store
        Where every message but control commands is appended (one transaction a batch).
    events
        What the messages mean to the caller.
    lock
        Held around each batch, when ``events`` shares state with other threads.
    """

    def __init__(self, store: Store, events: TrialEvents, *,
                 lock: AbstractContextManager[Any] | None = None) -> None:
        self.store = store
        self.events = events
        self.lock: AbstractContextManager[Any] = lock if lock is not None \
            else contextlib.nullcontext()
        self._warned_unshared = False  # one checkpoint warning a search or run is enough

    def __call__(self, batch: Sequence[Message]) -> dict[int, dict[str, Any]]:
        """Handle one batch; the decisions to send back, by trial, as channel replies."""
        events = self.events
        decisions: dict[int, Decision] = {}
        with self.lock:
            for msg in batch:
                if msg.kind == "control":
                    decisions[msg.trial] = events.on_control(msg.data)
            self.store.append([m for m in batch if m.kind != "control"])
            for msg in batch:
                if msg.kind == "control" or events.attempt(msg.trial) != msg.attempt:
                    continue
                events.on_seen(msg)
                if msg.kind == "start":
                    self._check_checkpoints(msg)
                    events.on_start(msg)
                elif msg.kind == "checkpoint":
                    path, step = str(msg.data["path"]), msg.data.get("step")
                    self.store.add_checkpoint(msg.trial, step, path)
                    events.on_checkpoint(msg.trial, step, path)
                elif msg.kind == "report":
                    decision = events.on_report(msg)
                    if decision is not None:
                        decisions[msg.trial] = decision
                elif msg.kind == "end":
                    events.on_end(msg)
            for trial, decision in events.pending().items():
                decisions.setdefault(trial, decision)
        return {trial: d.to_dict() for trial, d in decisions.items()}

    def _check_checkpoints(self, msg: Message) -> None:
        """Warn when a trial's worker does not see the checkpoint folder.

        See :mod:`._checkpoints`: rank 0 writes there, and every rank of a retry reads.
        """
        data = msg.data
        if data.get("checkpoints_shared") is not False or self._warned_unshared:
            return
        self._warned_unshared = True
        warn_unshared(str(data.get("checkpoint_dir", "")), str(data.get("worker")),
                      str(data.get("host")))
