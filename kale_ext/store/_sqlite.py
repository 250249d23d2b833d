"""The SQLite store: one file per search, WAL mode, one writer, many read-only readers."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from kale_ext import config, registry
from kale_ext._errors import StoreError
from kale_ext.store._base import (
    NEW_TRIAL,
    TRIAL_FIELDS,
    Checkpoint,
    MetricRow,
    State,
    States,
    Store,
    Transition,
    TrialRecord,
)
from kale_ext.store._paths import finite, network_filesystem, row_step
from kale_ext.store._schema import SCHEMA, SCHEMA_VERSION, TRIAL_COLUMNS, create, direction

if TYPE_CHECKING:
    from kale_ext.channel import Message, StreamKey

logger = logging.getLogger(__name__)

_SIDECARS = ("-wal", "-shm", ".lock")


class SQLiteStore(Store):
    """A search store in one SQLite file.

    Opened for writing, it takes an exclusive lock (``<path>.lock``) so a second driver
    cannot corrupt it; opened ``readonly``, any number of processes read concurrently
    while the writer appends (WAL mode).
    """

    def __init__(self, path: Path, *, readonly: bool = False, states: States | None = None,
                 objective: tuple[str, str] | None = None) -> None:
        self.path = path
        self.readonly = readonly
        self._states: States = states or int
        self._lock = threading.RLock()  # one connection, shared by the driver's threads
        self._batch = 0  # depth of batch() blocks open in the thread holding the lock
        self._lock_fd: int | None = None
        self._objective = objective
        # It holds pickles (the trainable): refused when others could have written it.
        registry.guard_file(path, what="Search store", create=not readonly, sidecars=_SIDECARS,
                            own_folder=path.parent.resolve() == config.store_dir().resolve())
        if readonly:
            if not path.exists():
                raise StoreError(f"No search store at {path}: check the path, or list stores "
                                 "with `kale searches`.")
            self._conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                                         check_same_thread=False, isolation_level=None)
        else:
            self._conn = self._open_writer(path)
        self._conn.execute("PRAGMA busy_timeout = 10000")
        try:
            version = self._conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as e:
            self.close()
            raise StoreError(f"{path} is not a kale search store: {e}.") from e
        if version is None or int(version[0]) != SCHEMA_VERSION:
            self.close()
            raise StoreError(f"{path} has store schema {version and version[0]}; this kale_ext "
                             f"reads schema {SCHEMA_VERSION}. Open it with a matching version.")
        # Stores written before trials had a launch column read it as empty.
        self._columns = TRIAL_COLUMNS if "launch" in self._trial_columns() \
            else TRIAL_COLUMNS.replace("launch", "NULL")

    def _open_writer(self, path: Path) -> sqlite3.Connection:
        fstype = network_filesystem(path.parent)
        if fstype:
            logger.warning("Search store %s is on a %s file system; SQLite is unreliable there. "
                           "Put it on local disk (kale.store-dir).", path, fstype)
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StoreError(f"Search store {path} is open for writing in another process (one "
                             "driver per search). Open it with readonly=True to read it.") from e
        if not path.exists():
            create(path)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives the death of this process (the WAL is in the
        # OS page cache) but the last commits may roll back on power loss or an OS crash;
        # the database itself stays consistent. FULL would fsync every commit.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        if "launch" not in {r[1] for r in conn.execute("PRAGMA table_info(trials)")}:
            conn.execute("ALTER TABLE trials ADD COLUMN launch TEXT")
        return conn

    def _trial_columns(self) -> set[str]:
        return {r[1] for r in self._read("PRAGMA table_info(trials)")}

    # --- plumbing --------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make every write of the block one transaction: kept all together, or none."""
        with self._write():
            self._batch += 1
            try:
                yield
            finally:
                self._batch -= 1

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"Search store {self.path} was opened read-only; only the search "
                             "driver writes it.")
        with self._lock:
            if self._batch:  # inside batch(): its transaction holds this write too
                yield self._conn
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError:
                raise
            except (sqlite3.Error, OSError, OverflowError) as e:
                # Disk full, a read-only or vanished file: nothing of this write is kept.
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise StoreError(f"Search store {self.path} could not be written: {e}. Free "
                                 "space on its disk or make it writable, then resume the "
                                 "search.") from e

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- the search ------------------------------------------------------------------

    def create_search(self, definition: dict[str, Any]) -> None:
        try:
            text = json.dumps(definition)
        except (TypeError, ValueError) as e:
            raise StoreError(f"The search definition must be JSON serialisable: {e}.") from e
        try:
            with self._write() as conn:
                conn.execute("INSERT INTO search VALUES (1, ?, ?, ?, ?)",
                             (definition.get("name"), text, time.time(), "created"))
        except sqlite3.IntegrityError as e:
            raise StoreError(f"Search store {self.path} already holds a search; resume it or "
                             "use a new path.") from e
        if self._objective is None and definition.get("metric"):
            self._objective = (str(definition["metric"]), str(definition.get("mode") or "max"))

    def search(self) -> dict[str, Any]:
        rows = self._read("SELECT name, definition, created, state FROM search")
        if not rows:
            raise StoreError(f"Search store {self.path} holds no search yet.")
        name, definition, created, state = rows[0]
        reason = self._read("SELECT value FROM meta WHERE key = 'reason'")
        lag = self._read("SELECT value FROM meta WHERE key = 'lag'")
        return {"name": name, "definition": json.loads(definition), "created": created,
                "state": state, "reason": reason[0][0] if reason else None,
                "lag": json.loads(lag[0][0]) if lag else None}

    def set_search_lag(self, lag: dict[str, float]) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('lag', ?)", (json.dumps(lag),))

    def set_search_state(self, state: str, reason: str | None = None) -> None:
        with self._write() as conn:
            conn.execute("UPDATE search SET state = ?", (state,))
            # The reason lives in meta, so stores written before it read back unchanged.
            conn.execute("DELETE FROM meta WHERE key = 'reason'")
            if reason:
                conn.execute("INSERT INTO meta VALUES ('reason', ?)", (reason,))

    # --- trials ----------------------------------------------------------------------

    def add_trial(self, number: int, params: dict[str, Any]) -> None:
        now = time.time()
        try:
            with self._write() as conn:
                conn.execute("INSERT INTO trials (number, state, params, updated) "
                             "VALUES (?, ?, ?, ?)",
                             (number, NEW_TRIAL, json.dumps(params), now))
                conn.execute("INSERT INTO transitions (trial, source, target, reason, time) "
                             "VALUES (?, NULL, ?, 'added', ?)", (number, NEW_TRIAL, now))
        except sqlite3.IntegrityError as e:
            raise StoreError(f"Trial {number} already exists in {self.path}.") from e

    def transition(self, number: int, to: State, reason: str = "", **fields: Any) -> None:
        unknown = sorted(set(fields) - set(TRIAL_FIELDS))
        if unknown:
            raise StoreError(f"Unknown trial field(s) {', '.join(unknown)}; transition() sets "
                             f"{', '.join(TRIAL_FIELDS)}.")
        now = time.time()
        if to.is_running():
            fields.setdefault("started", now)
            fields.setdefault("ended", None)
        elif to.is_finished():
            fields.setdefault("ended", now)
        if "params" in fields:
            fields["params"] = json.dumps(fields["params"])
        with self._write() as conn:
            row = conn.execute("SELECT state FROM trials WHERE number = ?", (number,)).fetchone()
            if row is None:
                raise StoreError(f"No trial {number} in {self.path}; add it with add_trial().")
            names = ", ".join(f"{name} = ?" for name in fields)
            conn.execute(f"UPDATE trials SET state = ?, updated = ?{', ' if names else ''}{names} "
                         "WHERE number = ?", (int(to), now, *fields.values(), number))
            conn.execute("INSERT INTO transitions (trial, source, target, reason, time) "
                         "VALUES (?, ?, ?, ?, ?)", (number, row[0], int(to), reason, now))

    def set_launch(self, number: int, launch: dict[str, Any], *, merge: bool) -> None:
        with self._write() as conn:
            row = conn.execute("SELECT launch FROM trials WHERE number = ?", (number,)).fetchone()
            if row is None:
                raise StoreError(f"No trial {number} in {self.path}; add it with add_trial().")
            data = {**json.loads(row[0]), **launch} if merge and row[0] else launch
            conn.execute("UPDATE trials SET launch = ?, updated = ? WHERE number = ?",
                         (json.dumps(data), time.time(), number))

    def trials(self, *, limit: int | None = None, offset: int = 0,
               states: Collection[int] | None = None,
               best_first: str | None = None,
               updated_since: float | None = None) -> list[TrialRecord]:
        sql = f"SELECT {self._columns} FROM trials WHERE 1"
        args: list[Any] = []
        if states is not None:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            args += [int(s) for s in states]
        if updated_since is not None:
            sql += " AND updated >= ?"
            args.append(float(updated_since))
        if best_first is not None:
            sql += f" ORDER BY best IS NULL, best {direction(best_first)}, number"
        else:
            sql += " ORDER BY number"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args += [-1 if limit is None else int(limit), int(offset)]
        return [self._record(r) for r in self._read(sql, tuple(args))]

    def trial_counts(self) -> dict[int, int]:
        return {int(state): int(n) for state, n in
                self._read("SELECT state, COUNT(*) FROM trials GROUP BY state")}

    def best_trial(self, mode: str) -> TrialRecord | None:
        rows = self._read(f"SELECT {self._columns} FROM trials WHERE best IS NOT NULL "
                          f"ORDER BY best {direction(mode)}, number LIMIT 1")
        return self._record(rows[0]) if rows else None

    def trial(self, number: int) -> TrialRecord:
        rows = self._read(f"SELECT {self._columns} FROM trials WHERE number = ?", (number,))
        if not rows:
            raise StoreError(f"No trial {number} in {self.path}.")
        return self._record(rows[0])

    def transitions(self, number: int | None = None) -> list[Transition]:
        sql = "SELECT id, trial, source, target, reason, time FROM transitions"
        rows = self._read(sql + " WHERE trial = ? ORDER BY id", (number,)) if number is not None \
            else self._read(sql + " ORDER BY id")
        state = self._states
        return [Transition(i, t, state(s) if s is not None else None, state(g), r, tm)
                for i, t, s, g, r, tm in rows]

    # --- metrics and checkpoints -----------------------------------------------------

    def append(self, messages: Sequence[Message]) -> None:
        objective = self._objective
        rows: list[tuple[Any, ...]] = []
        delivered: dict[StreamKey, int] = {}
        last: dict[int, tuple[int, int, str]] = {}
        best: dict[int, tuple[float, int | None]] = {}
        for m in messages:
            if m.seq < 0:  # heartbeats are not sequenced and leave no row
                continue
            delivered[m.stream] = max(delivered.get(m.stream, -1), m.seq)
            if m.kind != "report":
                continue
            step = row_step(m.data)
            values = json.dumps(m.data)
            rows.append((m.trial, m.attempt, m.rank, m.seq, step, m.time, values))
            if m.rank != 0:
                continue
            if m.trial not in last or (m.attempt, m.seq) > last[m.trial][:2]:
                last[m.trial] = (m.attempt, m.seq, values)
            value = m.data.get(objective[0]) if objective else None
            if objective and finite(value):
                value = float(value)  # type: ignore[arg-type]
                old = best.get(m.trial)
                if old is None or (value > old[0] if objective[1] == "max" else value < old[0]):
                    best[m.trial] = (value, step)
        if not delivered:
            return
        cmp = ">" if objective is None or objective[1] == "max" else "<"
        now = time.time()
        with self._write() as conn:
            conn.executemany('INSERT OR IGNORE INTO metrics (trial, attempt, rank, seq, step, '
                             'time, "values") VALUES (?, ?, ?, ?, ?, ?, ?)', rows)
            conn.executemany("INSERT INTO delivered VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (trial, attempt, rank) DO UPDATE "
                             "SET seq = max(seq, excluded.seq)",
                             [(*stream, seq) for stream, seq in delivered.items()])
            conn.executemany(
                "UPDATE trials SET last = ?, last_attempt = ?, last_seq = ?, updated = ? "
                "WHERE number = ? AND (last_attempt IS NULL OR last_attempt < ? "
                "OR (last_attempt = ? AND last_seq < ?))",
                [(v, a, s, now, t, a, a, s) for t, (a, s, v) in last.items()])
            conn.executemany(f"UPDATE trials SET best = ?, best_step = ? WHERE number = ? "
                             f"AND (best IS NULL OR ? {cmp} best)",
                             [(v, step, t, v) for t, (v, step) in best.items()])

    def metrics(self, number: int | None = None, since_rowid: int = 0,
                limit: int | None = None) -> list[MetricRow]:
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise StoreError(f"limit must be an integer >= 0 or None, but got limit={limit!r}.")
        sql = 'SELECT id, trial, attempt, rank, seq, step, time, "values" FROM metrics WHERE id > ?'
        args: list[Any] = [since_rowid]
        if number is not None:
            sql += " AND trial = ?"
            args.append(number)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = self._read(sql, args)
        return [MetricRow(i, t, a, r, s, step, tm, json.loads(v))
                for i, t, a, r, s, step, tm, v in rows]

    def delivered(self) -> dict[StreamKey, int]:
        return {(t, a, r): s for t, a, r, s in self._read("SELECT * FROM delivered")}

    def add_checkpoint(self, number: int, step: int | None, path: str) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute("INSERT INTO checkpoints (trial, step, path, time) VALUES (?, ?, ?, ?)",
                         (number, step, os.fspath(path), now))
            conn.execute("UPDATE trials SET checkpoint = ?, updated = ? WHERE number = ?",
                         (os.fspath(path), now, number))

    def checkpoints(self, number: int | None = None) -> list[Checkpoint]:
        sql = "SELECT id, trial, step, path, time FROM checkpoints"
        rows = self._read(sql + " WHERE trial = ? ORDER BY id", (number,)) if number is not None \
            else self._read(sql + " ORDER BY id")
        return [Checkpoint(*r) for r in rows]

    def _record(self, row: Sequence[Any]) -> TrialRecord:
        (number, state, params, attempt, worker, job_id, started, ended, last, best, best_step,
         error, checkpoint, retries, updated, launch) = row
        return TrialRecord(number, self._states(state), json.loads(params), attempt, worker,
                           job_id, started, ended, json.loads(last) if last else {}, best,
                           best_step, error, checkpoint, retries, updated,
                           json.loads(launch) if launch else {})

