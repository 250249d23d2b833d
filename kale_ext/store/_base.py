"""The abstract search store and the frozen snapshots it hands out."""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kale_ext._errors import StoreError

if TYPE_CHECKING:
    from kale_ext.channel import Message, StreamKey

# Columns of a trial that ``Store.transition`` may set besides the state.
TRIAL_FIELDS = ("params", "attempt", "worker", "job_id", "started", "ended", "error",
                "checkpoint", "retries")

NEW_TRIAL = 0
"""The state int a trial is added in (the caller's first state: pending)."""


class State(Protocol):
    """A trial state as the store's caller gives it.

    The store needs the int it persists, whether the state starts an attempt
    (``started`` is set) or ends the trial (``ended`` is set), and a label for JSON.
    ``kale_ext.trial.TrialState`` is one.
    """

    def __int__(self) -> int: ...

    def is_running(self) -> bool: ...

    def is_finished(self) -> bool: ...

    @property
    def label(self) -> str: ...


States = Callable[[int], int]
"""Turns a stored state int back into the caller's state (e.g. ``kale_ext.trial.TrialState``)."""


def state_label(state: int) -> str | int:
    """Return the label of a state read back with the caller's ``states``, else the int."""
    label = getattr(state, "label", None)
    return label if isinstance(label, str) else int(state)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the store last recorded it.

    ``state`` is the stored int, as the ``states`` the store was opened with make it (a
    ``kale_ext.trial.TrialState``). ``last`` holds the values of the trial's latest
    report from rank 0, and ``best`` the best finite value of the search's objective
    over all attempts. ``launch`` says where the launch of its latest attempt went
    (``scheduling``, ``imports``, ``first_report`` seconds, ``first_on_worker``).
    """

    number: int
    state: int
    params: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    worker: str | None = None
    job_id: str | None = None
    started: float | None = None
    ended: float | None = None
    last: dict[str, Any] = field(default_factory=dict)
    best: float | None = None
    best_step: int | None = None
    error: str | None = None
    checkpoint: str | None = None
    retries: int = 0
    updated: float | None = None
    launch: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "state": state_label(self.state), "params": self.params,
                "attempt": self.attempt, "worker": self.worker, "job_id": self.job_id,
                "started": self.started, "ended": self.ended, "last": self.last,
                "best": self.best, "best_step": self.best_step, "error": self.error,
                "checkpoint": self.checkpoint, "retries": self.retries, "updated": self.updated,
                "launch": self.launch}


@dataclass(frozen=True)
class MetricRow:
    """One report.

    ``rowid`` grows with every stored row: pass the last one seen as ``since_rowid``
    to read only newer rows.
    """

    rowid: int
    trial: int
    attempt: int
    rank: int
    seq: int
    step: int | None
    time: float
    values: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"rowid": self.rowid, "trial": self.trial, "attempt": self.attempt,
                "rank": self.rank, "seq": self.seq, "step": self.step, "time": self.time,
                "values": self.values}


@dataclass(frozen=True)
class Transition:
    """A change of a trial's state; ``source`` is None for the trial's creation."""

    rowid: int
    trial: int
    source: int | None
    target: int
    reason: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"rowid": self.rowid, "trial": self.trial,
                "from": state_label(self.source) if self.source is not None else None,
                "to": state_label(self.target), "reason": self.reason, "time": self.time}


@dataclass(frozen=True)
class Checkpoint:
    rowid: int
    trial: int
    step: int | None
    path: str
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"rowid": self.rowid, "trial": self.trial, "step": self.step,
                "path": self.path, "time": self.time}


class Store(ABC):
    """Everything one search records.

    That is its definition, trials, transitions, metrics and checkpoints. Written by
    the search driver only; read by anyone.

    Every write is one transaction. Readers get frozen snapshots.
    """

    readonly: bool

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False,
             states: States | None = None, objective: tuple[str, str] | None = None) -> Store:
        """Open the store at ``path`` (a SQLite file), creating it unless ``readonly``.

        Parameters
        ----------
        path
            A file path or ``sqlite:///path``.
        readonly
            Open for reading only (any number of readers beside the one writer).
        states
            Turns stored state ints into the caller's states in the records read back
            (``kale_ext.trial.TrialState``); default: the ints as stored.
        objective
            ``(metric, mode)`` whose best value :meth:`append` keeps per trial; default:
            the ``metric`` and ``mode`` of the definition given to :meth:`create_search`.
        """
        text = os.fspath(path)
        if "://" in text and not text.startswith("sqlite://"):
            raise StoreError(f"Unsupported store address {text!r}: only SQLite files (a path "
                             "or sqlite:///path) are supported.")
        from kale_ext.store._sqlite import SQLiteStore

        return SQLiteStore(Path(text.removeprefix("sqlite://")), readonly=readonly,
                           states=states, objective=objective)

    # --- the search ------------------------------------------------------------------

    @abstractmethod
    def create_search(self, definition: dict[str, Any]) -> None:
        """Record the search's definition (JSON: fn reference, space, metric, mode, ...).

        Unless the store was opened with an ``objective``, the definition's ``metric``
        and ``mode`` become it.
        """

    @abstractmethod
    def search(self) -> dict[str, Any]:
        """``{"name", "definition", "created", "state", "reason", "lag"}`` of the search.

        ``reason`` says why the search ended as it did (e.g. the driver's error); None
        when nothing was said. ``lag``: the driver's latest lag figures (seconds:
        ``loop``, ``ingest``, ``recent``, ``max``), None before it recorded any.
        """

    @abstractmethod
    def set_search_state(self, state: str, reason: str | None = None) -> None:
        """Set the search's state (``"running"``, ``"completed"``, ``"failed"``...) and why."""

    @abstractmethod
    def set_search_lag(self, lag: dict[str, float]) -> None:
        """Record the driver's lag figures (seconds), read back as ``search()["lag"]``."""

    # --- trials ----------------------------------------------------------------------

    @abstractmethod
    def add_trial(self, number: int, params: dict[str, Any]) -> None:
        """Add a trial in state :data:`NEW_TRIAL` (pending)."""

    @abstractmethod
    def transition(self, number: int, to: State, reason: str = "", **fields: Any) -> None:
        """Move trial ``number`` to state ``to``, setting ``fields`` (see TRIAL_FIELDS).

        A state that starts an attempt sets ``started`` (and clears ``ended``), one that
        ends the trial sets ``ended``, unless ``fields`` give them.
        """

    @abstractmethod
    def set_launch(self, number: int, launch: dict[str, Any], *, merge: bool) -> None:
        """Record where the launch of the trial's current attempt went (``launch``).

        ``merge``: add to what the attempt has; otherwise replace it (a new attempt).
        """

    @abstractmethod
    def trials(self, *, limit: int | None = None, offset: int = 0,
               states: Collection[int] | None = None,
               best_first: str | None = None,
               updated_since: float | None = None) -> list[TrialRecord]:
        """Return trials by number, or with ``best_first="max"``/``"min"`` best value first.

        ``states`` keeps those in the given stored states; ``limit`` and ``offset`` page
        through the result in the store's query, so a page costs the same in a search of
        ten or ten thousand trials. ``updated_since`` keeps those whose ``updated`` time
        is that or later (a reader following changes).
        """

    @abstractmethod
    def trial_counts(self) -> dict[int, int]:
        """Return how many trials are in each stored state."""

    @abstractmethod
    def best_trial(self, mode: str) -> TrialRecord | None:
        """Return the trial with the best value of the objective (``"max"`` or ``"min"``).

        Ties go to the lowest trial number; None before any trial has a value.
        """

    @abstractmethod
    def trial(self, number: int) -> TrialRecord: ...

    @abstractmethod
    def transitions(self, number: int | None = None) -> list[Transition]: ...

    # --- metrics and checkpoints -----------------------------------------------------

    @abstractmethod
    def append(self, messages: Sequence[Message]) -> None:
        """Store a batch of messages from the channel.

        That is a metric row per report and the last delivered seq of every stream.
        Re-appending a message already stored changes nothing.
        """

    @abstractmethod
    def metrics(self, number: int | None = None, since_rowid: int = 0,
                limit: int | None = None) -> list[MetricRow]:
        """Return the metric rows after row id ``since_rowid``, in row order.

        Only trial ``number``'s rows when it is given, else every trial's; at most
        ``limit`` of them.
        """

    @abstractmethod
    def delivered(self) -> dict[StreamKey, int]:
        """Last delivered seq per (trial, attempt, rank): seeds a resumed ChannelServer."""

    @abstractmethod
    def add_checkpoint(self, number: int, step: int | None, path: str) -> None: ...

    @abstractmethod
    def checkpoints(self, number: int | None = None) -> list[Checkpoint]: ...

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Group the writes of a block into one transaction (a store may write each alone)."""
        return contextlib.nullcontext()

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
