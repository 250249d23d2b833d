"""What the sidebar tidies.

That is searches forgotten (their files kept or deleted), stores that no longer exist,
and failed cluster starts until they are dismissed.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any

from kale_ext import registry
from kale_ext.trial import open_store

logger = logging.getLogger(__name__)

FAILED_STARTS = "failed-starts"  # the registry kind kale_ext.clusters writes
_TRIAL_DIR = re.compile(r"trial-\d+")


def failed_starts() -> list[dict[str, Any]]:
    """Every recorded failed cluster start, newest first."""
    return sorted(registry.records(FAILED_STARTS), key=lambda r: -float(r.get("time") or 0))


def dismiss_failed_start(record_id: str) -> bool:
    """Drop a failed start's record; False when there was none."""
    known = registry.read(FAILED_STARTS, record_id) is not None
    registry.remove(FAILED_STARTS, record_id)
    return known


def store_missing(record: dict[str, Any]) -> bool:
    """Whether the store a search record names is gone from disk."""
    store = record.get("store")
    return bool(store) and not Path(str(store)).exists()


def search_files(store: Path) -> list[Path]:
    """Return the store of a search (with SQLite's side files) and its checkpoint folders.

    Checkpoint folders are the roots the stored checkpoints lie under (the parents of
    their ``trial-<n>`` folders), and ``<store>.checkpoints`` beside the store.
    """
    files = [p for p in (store, store.with_name(store.name + "-wal"),
                         store.with_name(store.name + "-shm")) if p.exists()]
    roots = {store.with_name(store.name + ".checkpoints")}
    try:
        with open_store(store, readonly=True) as s:
            for checkpoint in s.checkpoints():
                path = Path(checkpoint.path)
                for parent in (path, *path.parents):
                    if _TRIAL_DIR.fullmatch(parent.name):
                        roots.add(parent.parent)
                        break
    except Exception as e:  # an unreadable store: its default folder is all we know
        logger.info("cannot list the checkpoints of %s: %s", store, e)
    return files + sorted(r for r in roots if r.is_dir())


def delete_files(paths: list[Path]) -> list[str]:
    """Delete ``paths`` (files and folders); return what was deleted."""
    gone = []
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        gone.append(str(path))
    return gone
