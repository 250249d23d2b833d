"""Rebuilding a search from its store, after the kernel or the driver died."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from kale_ext._errors import SearchError
from kale_ext.search._timeouts import DEFAULT_GRACE
from kale_ext.trial import open_store

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster
    from kale_ext.search._search import Search


class ClassOrInstance:
    """One method name that acts on the class and on an instance.

    ``Search.resume(store)`` continues a search from its store; ``search.resume()``
    resumes a paused search or trial: one word, as users say it, for both.
    """

    def __init__(self, on_class: Any, on_instance: Callable[..., Any]) -> None:
        self.on_class, self.on_instance = on_class, on_instance
        self.__doc__ = f"{on_class.__func__.__doc__}\n\nOn an instance: {on_instance.__doc__}"

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        if obj is None:
            return self.on_class.__get__(None, cls)
        return self.on_instance.__get__(obj, cls)


class StoredFunction:
    """A trial function kept as the pickled bytes its store holds, loaded when called.

    A handle on a search run elsewhere never calls it: it only needs what the store has.
    """

    def __init__(self, pickled: bytes, name: str) -> None:
        self.pickled, self.__qualname__ = pickled, name

    def __call__(self, config: dict[str, Any]) -> Any:
        return cloudpickle.loads(self.pickled)(config)

    def __repr__(self) -> str:
        return f"<stored trial function {self.__qualname__}>"


def load_search(cls: type[Search], path: Path, *, cluster: Cluster | None,
                fn: Callable[[dict[str, Any]], Any] | None, readonly: bool = False,
                detach: bool | None = None, log_to: str | None = None) -> Search:
    """Rebuild the search kept in the store at ``path``; its driver is not started.

    ``readonly``: a handle on a search whose driver runs elsewhere; its store is only
    read and its trial function stays pickled.
    """
    from kale_ext.search import Space, scheduler_from_dict
    from kale_ext.store import Store

    if not path.exists():
        raise SearchError(f"No search store at {path}; pass the path printed when the search "
                          "started (search.store_path).")
    with Store.open(path, readonly=True) as stored:
        definition = stored.search()["definition"]
    store = open_store(path, objective=(definition["metric"], definition["mode"]),
                       readonly=readonly)
    if fn is None and readonly:
        fn = StoredFunction(base64.b64decode(definition["fn_pickle"]),
                            str(definition.get("fn", "train")))
    elif fn is None:
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
        prefetch=definition.get("prefetch", 0),
        cluster=cluster, store=path, name=definition["name"], seed=definition["seed"],
        heartbeat_timeout=definition["heartbeat_timeout"],
        report_timeout=definition.get("report_timeout", 60.0),
        trial_timeout=definition.get("trial_timeout"),
        stop_grace=definition.get("stop_grace", DEFAULT_GRACE),
        workers_per_trial=definition.get("workers_per_trial", 1),
        engine=definition.get("engine", "torch"), detach=detach, log_to=log_to, _store=store,
    )
    return search
