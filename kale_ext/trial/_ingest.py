"""From the metric channel to the store.

This is the one step a search's driver and a training run share.

Every batch the channel delivers is stored first (the acknowledgement that follows tells
the workers it is durable); then the messages of each trial's current attempt are handed
to the :class:`TrialEvents` of whoever runs the trials, in order, and the decisions they
return go back with the acknowledgements.

Each message is applied at most once: a batch re-sent after its acknowledgement was lost
(or after a resumed driver opened the store) finds its messages already applied and only
re-stores them, which the store ignores. A message whose event handler raises is logged
and counted as applied, so one bad message cannot hold back the trial's later ones; only
a store that cannot be written fails the batch (nothing is acknowledged then).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from kale_ext._errors import StoreError
from kale_ext.store import Store
from kale_ext.trial._checkpoints import warn_unshared
from kale_ext.trial._state import Action, Decision, TrialState

if TYPE_CHECKING:
    from kale_ext.channel import Message, StreamKey

Target = int | tuple[int, int]
"""Whom a decision is for: a trial (its current attempt), or one (trial, attempt)."""

logger = logging.getLogger(__name__)


def open_store(path: str | os.PathLike[str], *, readonly: bool = False,
               objective: tuple[str, str] | None = None) -> Store:
    """:meth:`kale_ext.store.Store.open` with trial states read back as :class:`TrialState`."""
    return Store.open(path, readonly=readonly, states=TrialState, objective=objective)


class TrialEvents:
    """What channel messages mean to whoever runs the trials; override what matters.

    :class:`Ingest` calls these only for messages of a trial's current attempt (see
    :meth:`attempt`): a message of a superseded attempt (one the driver gave up on: its
    heartbeat was lost, it was retried) is stored, not acted on, and answered with
    :meth:`on_superseded`'s decision, a stop by default, for that attempt alone.
    """

    def attempt(self, trial: int) -> int | None:
        """Return the current attempt of ``trial``; None for a trial not run here."""
        raise NotImplementedError

    def on_superseded(self, message: Message, current: int) -> Decision:
        """Answer a message of an attempt other than ``current``: it must stop.

        Its checkpoints are not recorded either: the next attempt never restores from it.
        """
        return Decision(Action.STOP, f"attempt {message.attempt} of trial {message.trial} "
                        f"was superseded by attempt {current}")

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

    def on_store_failed(self, error: StoreError) -> None:
        """Learn that the store cannot be written: the batch is not acknowledged; end the run."""


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
        # The last applied seq of each stream: what the store holds was applied before.
        self._applied: dict[StreamKey, int] = dict(store.delivered())

    def __call__(self, batch: Sequence[Message]) -> dict[Target, dict[str, Any]]:
        """Handle one batch; the decisions to send back, as channel replies.

        They are keyed by trial, and by (trial, attempt) for an attempt that is not the
        trial's current one (see :meth:`kale_ext.channel.ChannelServer.set_decision`).

        Raises
        ------
        StoreError
            When the store cannot be written (disk full, read-only): nothing of the batch
            is acknowledged, and ``events.on_store_failed`` was told.
        """
        events = self.events
        decisions: dict[Target, Decision] = {}
        with self.lock:
            applied = self._applied
            fresh = [m for m in batch if m.seq < 0 or m.seq > applied.get(m.stream, -1)]
            try:
                self.store.append([m for m in fresh if m.kind != "control"])
                for msg in fresh:
                    target: Target = msg.trial
                    try:
                        current = events.attempt(msg.trial) if msg.kind != "control" \
                            else None
                        if current is not None and current != msg.attempt:
                            target = (msg.trial, msg.attempt)
                            decision: Decision | None = events.on_superseded(msg, current)
                        else:
                            decision = self._apply(msg)
                    except StoreError:
                        raise
                    except Exception:  # one bad message must not hold back the rest
                        logger.exception("Trial %d: its %s message %d (attempt %d, rank %d) "
                                         "could not be handled; it is skipped", msg.trial,
                                         msg.kind, msg.seq, msg.attempt, msg.rank)
                        decision = None
                    if msg.seq >= 0:
                        applied[msg.stream] = max(applied.get(msg.stream, -1), msg.seq)
                    if decision is not None:
                        decisions[target] = decision
            except StoreError as e:
                events.on_store_failed(e)
                raise
            for trial, decision in events.pending().items():
                decisions.setdefault(trial, decision)
        return {trial: d.to_dict() for trial, d in decisions.items()}

    def _apply(self, msg: Message) -> Decision | None:
        """Tell the events what ``msg`` means; return a decision for its trial, if any."""
        events = self.events
        if msg.kind == "control":
            return events.on_control(msg.data)
        if events.attempt(msg.trial) != msg.attempt:
            return None
        events.on_seen(msg)
        if msg.kind == "start":
            self._check_checkpoints(msg)
            events.on_start(msg)
        elif msg.kind == "checkpoint":
            path, step = str(msg.data["path"]), msg.data.get("step")
            step = step if isinstance(step, int) and not isinstance(step, bool) \
                and -2**63 <= step < 2**63 else None
            self.store.add_checkpoint(msg.trial, step, path)
            events.on_checkpoint(msg.trial, step, path)
        elif msg.kind == "report":
            return events.on_report(msg)
        elif msg.kind == "end":
            events.on_end(msg)
        return None

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
