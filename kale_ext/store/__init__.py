"""The search store: definition, trials, transitions, every reported metric, checkpoints.

One SQLite file per search in WAL mode, written only by the search driver and read
concurrently by other kernels, the command line, the Jupyter server and the widgets.
:class:`Store` is the small interface a server database could implement later.
"""

from __future__ import annotations

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
from kale_ext.store._paths import default_path, network_filesystem
from kale_ext.store._sqlite import SQLiteStore

__all__ = [
    "NEW_TRIAL",
    "TRIAL_FIELDS",
    "Checkpoint",
    "MetricRow",
    "SQLiteStore",
    "State",
    "States",
    "Store",
    "Transition",
    "TrialRecord",
    "default_path",
    "network_filesystem",
]
