"""Rebuilding a search from its store, after the kernel or the driver died."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from kale_ext._errors import SearchError
from kale_ext.trial import open_store

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
    search._driver.restore()
    return search
