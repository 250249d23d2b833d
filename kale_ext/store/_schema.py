"""The layout of a search store's SQLite file, and the SQL helpers its queries share."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from kale_ext._errors import StoreError

SCHEMA_VERSION = 1

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', '{SCHEMA_VERSION}');
CREATE TABLE IF NOT EXISTS search (
    id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT, definition TEXT NOT NULL,
    created REAL NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY, state INTEGER NOT NULL, params TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, worker TEXT, job_id TEXT, started REAL, ended REAL,
    last TEXT, last_attempt INTEGER, last_seq INTEGER, best REAL, best_step INTEGER,
    error TEXT, checkpoint TEXT, retries INTEGER NOT NULL DEFAULT 0, updated REAL,
    launch TEXT);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY, trial INTEGER NOT NULL, source INTEGER, target INTEGER NOT NULL,
    reason TEXT NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS transitions_trial ON transitions (trial);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY, trial INTEGER NOT NULL, attempt INTEGER NOT NULL,
    rank INTEGER NOT NULL, seq INTEGER NOT NULL, step INTEGER, time REAL NOT NULL,
    "values" TEXT NOT NULL, UNIQUE (trial, attempt, rank, seq));
CREATE TABLE IF NOT EXISTS delivered (
    trial INTEGER NOT NULL, attempt INTEGER NOT NULL, rank INTEGER NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (trial, attempt, rank)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, trial INTEGER NOT NULL, step INTEGER, path TEXT NOT NULL,
    time REAL NOT NULL);
"""

TRIAL_COLUMNS = ("number, state, params, attempt, worker, job_id, started, ended, last, best, "
                  "best_step, error, checkpoint, retries, updated, launch")


def create(path: Path) -> None:
    """Write an empty store under a temporary name and move it into place.

    A reader (a panel, ``kale search show``) that finds the file then always finds its
    schema. The store holds the search's params and tracebacks, so only its owner may
    read it; SQLite gives the -wal and -shm files the database file's mode.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    os.close(os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600))
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
    finally:
        conn.close()
    os.replace(tmp, path)


def direction(mode: str) -> str:
    """Return the SQL order that puts the best value first in ``mode``."""
    if mode not in ("max", "min"):
        raise StoreError(f"mode must be 'max' or 'min', but got {mode!r}.")
    return "DESC" if mode == "max" else "ASC"
