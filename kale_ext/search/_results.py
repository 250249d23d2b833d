"""Reading a search back from its store: results tables, histories, the registry's list.

Works on a live search and on a store opened read-only by another process alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kale_ext import registry
from kale_ext.search._migration import migrations
from kale_ext.search._space import Space
from kale_ext.search._summary import summarize_store
from kale_ext.trial import LAUNCH_FIELDS, TrialState, open_store

if TYPE_CHECKING:
    import pandas as pd

    from kale_ext.store import Store

_METRIC_ORDER = ("epoch", "step", "loss", "val_loss", "acc", "val_acc")


def results_frame(store: Store, metric: str, mode: str) -> pd.DataFrame:
    """Return one row per trial.

    The columns are number, state, flattened params, last metrics, best value, duration,
    worker, attempt, retries, migrations (moves off workers about to retire), error, and
    where the latest attempt's launch went:
    ``launch_scheduling``, ``launch_imports``, ``launch_first_report`` (seconds) and
    ``launch_first_on_worker`` (see :mod:`kale_ext.trial._launch`).
    """
    import pandas as pd

    rows = []
    moved = migrations(store)
    for t in store.trials():
        row: dict[str, Any] = {"trial": t.number, "state": TrialState(t.state).label}
        row.update(Space.flatten(t.params))
        last = dict(t.last)
        for name in _METRIC_ORDER:
            if name in last:
                row[name] = last.pop(name)
        row.update(last)
        row[f"best_{metric}"] = t.best
        row["duration"] = (t.ended or t.updated or 0) - t.started if t.started else None
        row.update(worker=t.worker, attempt=t.attempt, retries=t.retries,
                   migrations=moved.get(t.number, 0), error=t.error)
        row.update({f"launch_{k}": t.launch.get(k) for k in LAUNCH_FIELDS})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame = frame.sort_values("trial").reset_index(drop=True)
    return frame


def history_frame(store: Store, trial: int) -> pd.DataFrame:
    """Every metric row of ``trial`` with its attempt, rank, step and time."""
    import pandas as pd

    return pd.DataFrame([
        {"attempt": m.attempt, "rank": m.rank, "seq": m.seq, "step": m.step, "time": m.time,
         **m.values}
        for m in store.metrics(trial)
    ])


def searches() -> list[dict[str, Any]]:
    """Every search in the registry with its state and trial counts, newest last.

    Reads each store read-only, so it works from any kernel or process.
    """
    out = []
    for record in registry.records("searches"):
        entry = dict(record)
        try:
            with open_store(record["store"], readonly=True) as store:
                info = store.search()
                definition = info["definition"]
                summary = summarize_store(store, mode=definition.get("mode"))
            entry["state"] = info.get("state")
            entry["trials"] = summary.counts
            entry["best"] = summary.best
        except Exception as e:  # a store deleted or unreadable: say so, list the rest
            entry["state"] = f"unreadable: {e}"
        out.append(entry)
    return out
