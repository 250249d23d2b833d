"""Rebuilding a search from its store, after the kernel or the driver died."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from kale_ext._errors import SearchError
from kale_ext.search._driver import TrialRun
from kale_ext.trial import TrialState, open_store

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster
    from kale_ext.search._search import Search


def load_search(cls: type[Search], path: Path, *, cluster: Cluster | None,
                fn: Callable[[dict[str, Any]], Any] | None) -> Search:
    from kale_ext.search import Space, scheduler_from_dict
    from kale_ext.store import Store

    if not path.exists():
        raise SearchError(f"No search store at {path}; pass the path printed when the search "
                          "started (search.store_path).")
    with Store.open(path, readonly=True) as stored:
        definition = stored.search()["definition"]
    store = open_store(path, objective=(definition["metric"], definition["mode"]))
    if fn is None:
        try:
            fn = cloudpickle.loads(base64.b64decode(definition["fn_pickle"]))
        except Exception as e:
            raise SearchError(
                f"The trial function {definition.get('fn')!r} stored in {path} cannot be "
                f"loaded here ({type(e).__name__}: {e}); pass it again with fn=."
            ) from e
    search = cls(
        fn, Space.from_dict(definition["space"]), metric=definition["metric"],
        mode=definition["mode"], algorithm=definition["algorithm"],
        scheduler=scheduler_from_dict(definition["scheduler"]), trials=definition["trials"],
        max_concurrent=definition["max_concurrent"], retries=definition["retries"],
        cluster=cluster, store=path, name=definition["name"], seed=definition["seed"],
        heartbeat_timeout=definition["heartbeat_timeout"],
        report_timeout=definition.get("report_timeout", 60.0),
        workers_per_trial=definition.get("workers_per_trial", 1),
        engine=definition.get("engine", "torch"), _store=store,
    )
    _restore_trials(search)
    return search


def _restore_trials(search: Search) -> None:
    """Rebuild the runs, replay the scheduler's history and tell the sampler the past."""
    store, scheduler = search.store, search.scheduler
    checkpoints: dict[int, str] = {}
    for c in store.checkpoints():
        checkpoints[c.trial] = c.path  # in order: the latest wins
    history = []
    for record in sorted(store.trials(), key=lambda r: r.number):
        run = TrialRun(number=record.number, config=record.params,
                       state=TrialState(record.state),
                       attempt=record.attempt, retries=record.retries,
                       checkpoint=checkpoints.get(record.number), metrics=dict(record.last),
                       worker=record.worker)
        search.runs[run.number] = run
        scheduler.on_trial_add(run.number, run.config)
    for row in store.metrics():
        value = row.values.get(search.metric)
        if row.rank == 0 and row.step is not None and isinstance(value, int | float):
            search.runs[row.trial].last_step = int(row.step)
            scheduler.on_report(row.trial, int(row.step), float(value))
    for run in search.runs.values():
        if run.state.is_finished():
            scheduler.on_trial_end(run.number, run.state)
            value = run.metrics.get(search.metric)
            history.append((run.config, float(value) if isinstance(value, int | float)
                            else None, run.state))
        elif run.state is TrialState.RUNNING:
            run.state = TrialState.PENDING
            store.transition(run.number, TrialState.PENDING,
                             "re-queued: the search's driver stopped while it ran"
                             + (f"; continues from {run.checkpoint}" if run.checkpoint else ""))
    search.sampler.restore(history)
