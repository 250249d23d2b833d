"""Incremental reads of a search store for the widgets.

A feed holds its own read-only connection (SQLite WAL: it never blocks the driver's
writes) and remembers the last metric row it saw, so each poll reads only new rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_ext.trial import open_store

if TYPE_CHECKING:
    from kale_ext.store import MetricRow, Store, TrialRecord


@dataclass
class Delta:
    """What changed in a store since the previous poll."""

    rows: list[MetricRow] = field(default_factory=list)  # new metric rows, every rank
    trials: list[TrialRecord] = field(default_factory=list)  # trials whose record changed
    state: str = ""  # the search's state: created, running, completed, stopped, failed
    polled: float = 0.0  # time.time() when the poll ran

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
        changed = []
        for t in self.store.trials():
            key = (t.state, t.updated, t.attempt, t.worker, t.best, t.retries)
            if self._seen.get(t.number) != key:
                self._seen[t.number] = key
                changed.append(t)
        state = str(self.store.search().get("state") or "")
        return Delta(rows, changed, state, time.time())

    def close(self) -> None:
        if self.owned:
            self.store.close()
