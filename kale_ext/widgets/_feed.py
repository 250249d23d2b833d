"""Incremental reads of a search store for the widgets.

A feed holds its own read-only connection (SQLite WAL: it never blocks the driver's
writes) and remembers the last metric row it saw, so each poll reads only new rows, and
the latest change time of the trials it saw, so each poll reads only the trials changed
since (with an overlap for writes stamped out of order, and all of them now and then).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_ext.search import migrations
from kale_ext.trial import open_store

_OVERLAP = 5.0  # seconds: a trial stamped this long before the latest change seen is read
_RESCAN_EVERY = 10.0  # seconds between reads of every trial

if TYPE_CHECKING:
    from kale_ext.store import MetricRow, Store, TrialRecord


@dataclass
class Delta:
    """What changed in a store since the previous poll."""

    rows: list[MetricRow] = field(default_factory=list)  # new metric rows, every rank
    trials: list[TrialRecord] = field(default_factory=list)  # trials whose record changed
    state: str = ""  # the search's state: created, running, completed, stopped, failed
    polled: float = 0.0  # time.time() when the poll ran
    migrations: dict[int, int] = field(default_factory=dict)  # trials that moved: how often

    @property
    def empty(self) -> bool:
        return not self.rows and not self.trials

    @property
    def last_rowid(self) -> int:
        return self.rows[-1].rowid if self.rows else 0


class StoreFeed:
    """Reads a search store incrementally: new metric rows and changed trials per poll.

    Parameters
    ----------
    store
        An open store. Polls use ``store.metrics(since_rowid=...)``.
    owned
        Close ``store`` with the feed.
    """

    def __init__(self, store: Store, *, owned: bool = False) -> None:
        self.store = store
        self.owned = owned
        self.rowid = 0
        self._seen: dict[int, tuple[Any, ...]] = {}
        self._moved: dict[int, tuple[int, int]] = {}  # (attempt, state) when moves were counted
        self._latest: float | None = None  # the latest trial change time read
        self._scanned = 0.0  # time.monotonic() of the last read of every trial
        search = store.search()
        self.name: str = search["name"] or ""
        self.definition: dict[str, Any] = search["definition"]
        self.created: float = float(search["created"])

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> StoreFeed:
        """Return a feed over a read-only view of the store at ``path``."""
        return cls(open_store(path, readonly=True), owned=True)

    def poll(self) -> Delta:
        """Metric rows stored since the last poll and the trials that changed."""
        import time

        rows = self.store.metrics(since_rowid=self.rowid)
        if rows:
            self.rowid = rows[-1].rowid
        changed, moved = [], {}
        now = time.monotonic()
        if self._latest is None or now - self._scanned >= _RESCAN_EVERY:
            trials, self._scanned = self.store.trials(), now
        else:
            trials = self.store.trials(updated_since=self._latest - _OVERLAP)
        for t in trials:
            if t.updated is not None:
                self._latest = max(self._latest or t.updated, t.updated)
            key = (t.state, t.updated, t.attempt, t.worker, t.best, t.retries)
            if self._seen.get(t.number) != key:
                self._seen[t.number] = key
                changed.append(t)
                if t.attempt > 1 and self._moved.get(t.number) != (t.attempt, t.state):
                    self._moved[t.number] = (t.attempt, t.state)  # a move changes either
                    moved[t.number] = migrations(self.store, t.number).get(t.number, 0)
        state = str(self.store.search().get("state") or "")
        return Delta(rows, changed, state, time.time(), moved)

    def close(self) -> None:
        if self.owned:
            self.store.close()
