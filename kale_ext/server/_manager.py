"""The manager behind the REST handlers.

It serves clusters, profiles and searches, read from the registry and the search stores.
Plain blocking Python, no tornado: the handlers run each call in an executor, and the
manager can be used and tested without a server.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kale_ext import config, registry
from kale_ext._errors import ConfigError, KaleError, SearchError
from kale_ext.search import ACTIONS, control, driver_alive, resume_driver, summarize_store
from kale_ext.server import _clusters, _housekeeping
from kale_ext.server._checks import MAX_INT, ApiError, check_overrides, check_page
from kale_ext.server._shapes import (
    ClusterActionShape,
    ClusterShape,
    ControlShape,
    FailedStartShape,
    ForgetShape,
    MetricsShape,
    ProfilesShape,
    SearchDetailShape,
    SearchMetricsShape,
    SearchShape,
    SeriesPointShape,
    TrialShape,
)
from kale_ext.trial import open_store

if TYPE_CHECKING:
    from kale_ext.store import MetricRow, Store

logger = logging.getLogger(__name__)

_START_KEYS = ("profile", "kind", "backend", "workers", "overrides")
# Stored rows read per answer of the search-wide metrics route: a bounded reply, however
# long the search has run; the client asks again from ``last_rowid`` while ``more``.
MAX_METRIC_ROWS = 5000


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise _bad(f"The body of {what} must be a JSON object, but got {body!r}.")
    return dict(body)


def _count(body: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
    """Return a non-negative integer field (JSON booleans are not counts)."""
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad(f"Field {key!r} must be an integer >= 0, but got {key}={value!r}.")
    return value


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise _bad(f"Field {key!r} must be a non-empty string or null, but got {key}={value!r}.")
    return cast("str | None", value)


def _unknown_keys(body: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise _bad(f"Unknown field(s) {', '.join(map(repr, extra))} in {what}; "
                   f"allowed: {', '.join(allowed)}.")


class KaleManager:
    """What the server extension serves. Every method blocks; call it off the event loop."""

    # -- clusters ------------------------------------------------------------------------

    def clusters(self) -> list[ClusterShape]:
        """Every registered cluster; ``unknown`` with the reason when its queue is unreachable."""
        return [cast(ClusterShape, s) for s in _clusters.cluster_list()]

    def cluster(self, cluster_id: str) -> ClusterShape:
        return cast(ClusterShape, self._with_cluster(cluster_id, lambda c: c.status()).to_dict())

    def start_cluster(self, body: Any) -> ClusterShape:
        """Start a cluster from a profile; blocks until its workers are up."""
        from kale_ext.clusters import start_cluster

        body = _object(body, "POST kale/api/clusters")
        _unknown_keys(body, _START_KEYS, "POST kale/api/clusters")
        overrides = _object(body.get("overrides") or {}, "field 'overrides'")
        clash = sorted(set(overrides) & set(_START_KEYS))
        if clash:
            raise _bad(f"Field 'overrides' may not contain {', '.join(map(repr, clash))}; "
                       "give them as top-level fields.")
        check_overrides(overrides)
        profile = _text(body, "profile")
        if profile is not None and profile not in config.profiles():
            raise _bad(f"Field 'profile' names unknown profile {profile!r}; known profiles: "
                       f"{', '.join(sorted(config.profiles())) or 'none'}.")
        try:
            cluster = start_cluster(_text(body, "kind"), backend=_text(body, "backend"),
                                    workers=_count(body, "workers", required=False),
                                    profile=profile, **overrides)
        except ConfigError as e:  # a rule of the profile or a keyword: the client's mistake
            raise _bad(str(e)) from e
        try:
            return cast(ClusterShape, cluster.status().to_dict())
        finally:
            cluster.disconnect()

    def patch_cluster(self, cluster_id: str, body: Any) -> ClusterActionShape:
        """Scale (``{"workers": n}``) or adapt (``{"minimum": a, "maximum": b}``)."""
        body = _object(body, f"PATCH kale/api/clusters/{cluster_id}")
        _unknown_keys(body, ("workers", "minimum", "maximum"), "PATCH kale/api/clusters/<id>")
        if "workers" in body:
            if "minimum" in body or "maximum" in body:
                raise _bad("Give either 'workers' (scale) or 'minimum' and 'maximum' (adapt), "
                           "not both.")
            n = cast(int, _count(body, "workers"))
            self._with_cluster(cluster_id, lambda c: c.scale(n))
            return {"id": cluster_id, "message": f"asked for {n} worker{'' if n == 1 else 's'}"}
        if "minimum" in body or "maximum" in body:
            low, high = cast(int, _count(body, "minimum")), cast(int, _count(body, "maximum"))
            if low > high:
                raise _bad(f"Field 'minimum' must not exceed 'maximum', but got "
                           f"minimum={low}, maximum={high}.")
            self._with_cluster(cluster_id, lambda c: c.adapt(low, high))
            return {"id": cluster_id, "message": f"adapting between {low} and {high} workers"}
        raise _bad("The body of PATCH kale/api/clusters/<id> needs 'workers' (scale) or "
                   "'minimum' and 'maximum' (adapt).")

    def stop_cluster(self, cluster_id: str) -> ClusterActionShape:
        from kale_ext.clusters import stop

        stop(cluster_id)
        return {"id": cluster_id, "message": "stopped"}

    @staticmethod
    def _with_cluster(cluster_id: str, action: Any) -> Any:
        from kale_ext.clusters import connect

        cluster = connect(cluster_id)
        try:
            return action(cluster)
        finally:
            cluster.disconnect()

    # -- profiles ------------------------------------------------------------------------

    def profiles(self) -> ProfilesShape:
        known = config.profiles()
        return {"default": config.get("default-profile") or "local",
                "profiles": [{"name": name, "options": dict(options)}
                             for name, options in sorted(known.items())]}

    # -- searches ------------------------------------------------------------------------

    def searches(self) -> list[SearchShape]:
        """Every registered search, newest last; an unreadable store says why in ``state``.

        A search whose store no longer exists is listed once, with ``state`` saying so,
        and forgotten: the next listing leaves it out.
        """
        out = []
        for record in registry.records("searches"):
            shape = self._describe(record)[0]
            if _housekeeping.store_missing(record):
                shape["state"] = f"missing: its store {record.get('store')} is gone; forgotten"
                registry.remove("searches", str(record.get("name")))
            out.append(shape)
        return out

    def forget_search(self, name: str, delete_files: bool = False) -> ForgetShape:
        """Drop a search from the registry, and with ``delete_files`` its files.

        The files are its store and checkpoint folders. A search whose driver still runs
        is refused (409).
        """
        record = self._search_record(name)
        if driver_alive(name):
            raise ApiError(409, f"Search {name!r} is still running; stop it (search.stop() "
                                "or its Stop button) before forgetting it.")
        files = _housekeeping.search_files(Path(str(record.get("store", ""))))
        deleted = _housekeeping.delete_files(files) if delete_files else []
        registry.remove("searches", name)
        return {"name": name, "deleted": deleted,
                "kept": [] if delete_files else [str(f) for f in files],
                "message": f"forgot {name}" + (f", deleted {len(deleted)} file(s)/folder(s)"
                                               if delete_files else ", its files kept")}

    # -- failed cluster starts -----------------------------------------------------------

    def failed_starts(self) -> list[FailedStartShape]:
        """Cluster starts that failed, newest first, until dismissed."""
        return [cast(FailedStartShape, r) for r in _housekeeping.failed_starts()]

    def dismiss_failed_start(self, record_id: str) -> ClusterActionShape:
        if not _housekeeping.dismiss_failed_start(record_id):
            raise ApiError(404, f"No failed start {record_id!r}; the sidebar lists them.")
        return {"id": record_id, "message": "dismissed"}

    def search(self, name: str) -> SearchDetailShape:
        summary, info = self._describe(self._search_record(name))
        if not info:
            raise ApiError(410, f"Search {name!r}: {summary['state']}.")
        detail = cast(SearchDetailShape, dict(summary))
        detail["definition"] = {k: v for k, v in info["definition"].items()
                                if k != "fn_pickle"}  # bytes of code: not for the browser
        detail["created"] = info.get("created")
        detail["lag"] = info.get("lag")
        return detail

    def stored_search(self, store: str) -> tuple[SearchDetailShape, list[TrialShape]]:
        """Read a search from its store file, registered or not: its detail and trials."""
        path = Path(store).expanduser().resolve()
        if not path.is_file():
            raise ApiError(404, f"No search store at {path}; give a store's path or a "
                                "registered search's name (kale search list).")
        with self._open(path.name, {"store": str(path)}) as s:
            name = str(s.search()["name"])
        summary, info = self._describe({"name": name, "store": str(path)})
        detail = cast(SearchDetailShape, dict(summary))
        detail["definition"] = {k: v for k, v in info["definition"].items() if k != "fn_pickle"}
        detail["created"] = info.get("created")
        detail["lag"] = info.get("lag")
        with self._open(name, {"store": str(path)}) as s:
            return detail, [cast(TrialShape, t.to_dict()) for t in s.trials()]

    def trials(self, name: str, limit: int = 0, offset: int = 0, state: str | None = None,
               order: str = "number") -> list[TrialShape]:
        """Return a search's trials, or a page of them, read by one query of its store.

        ``limit`` trials (0: all) after the first ``offset``, only those in ``state`` (a
        state's name), by number or with ``order="best"`` the best first.
        """
        states = check_page(limit, offset, state, order)
        with self._open(name) as store:
            mode = store.search()["definition"].get("mode") if order == "best" else None
            return [cast(TrialShape, t.to_dict()) for t in store.trials(
                limit=limit or None, offset=offset, states=states, best_first=mode)]

    def metrics(self, name: str, trial: int, since: int = 0) -> MetricsShape:
        """Every metric row of one trial after row id ``since``."""
        _check_since(since)
        with self._open(name) as store:
            known = {t.number for t in store.trials()}
            if trial not in known:
                raise ApiError(404, f"Search {name!r} has no trial {trial}; its trials are "
                                    f"{_numbers(known)}.")
            rows, _ = _rows_since(store, since, trial=trial)
        return {"trial": trial, "since": since,
                "last_rowid": rows[-1].rowid if rows else since,
                "rows": [cast(Any, r.to_dict()) for r in rows]}

    def search_metrics(self, name: str, since: int = 0, metric: str | None = None,
                       limit: int = MAX_METRIC_ROWS) -> SearchMetricsShape:
        """One metric of every trial after row id ``since``: the sidebar's sparklines.

        ``metric`` defaults to the search's own. At most ``limit`` stored rows are read;
        ``more`` says others remain after ``last_rowid``.
        """
        _check_since(since)
        if metric is not None and not metric:
            raise _bad("Query argument 'metric' must name a reported metric, but got "
                       "metric=''; leave it out for the search's own metric.")
        if not 1 <= limit <= MAX_METRIC_ROWS:
            raise _bad(f"Query argument 'limit' must be between 1 and {MAX_METRIC_ROWS}, "
                       f"but got limit={limit}.")
        with self._open(name) as store:
            rows, more = _rows_since(store, since, limit=limit)
            if metric is None:
                metric = str(store.search()["definition"]["metric"])
        points: list[SeriesPointShape] = []
        for r in rows:
            value = _finite(r.values.get(metric))
            # Rank 0 speaks for a distributed trial, as it does for the scheduler.
            if r.rank == 0 and value is not None:
                points.append({"rowid": r.rowid, "trial": r.trial, "attempt": r.attempt,
                               "step": r.step, "value": value})
        return {"metric": metric, "since": since, "more": more,
                "last_rowid": rows[-1].rowid if rows else since, "rows": points}

    def control(self, name: str, body: Any) -> ControlShape:
        """Forward a stop/pause/resume/restart to the search's live driver."""
        body = _object(body, f"POST kale/api/searches/{name}/control")
        _unknown_keys(body, ("action", "trial", "params"), "a control command")
        action = body.get("action")
        if action not in ACTIONS:
            raise _bad(f"Field 'action' must be one of {', '.join(ACTIONS)}, "
                       f"but got action={action!r}.")
        trial = _count(body, "trial", required=False)
        params = _object(body.get("params") or {}, "field 'params'")
        if action == "restart" and trial is None:
            raise _bad("Action 'restart' needs field 'trial' (the trial to run again).")
        if params and action != "restart":
            raise _bad(f"Field 'params' is only for action 'restart', not {action!r}.")
        self._search_record(name)
        try:
            if action == "resume" and trial is None and not driver_alive(name):
                message = resume_driver(name)  # a new driver process, from the store
            else:
                message = control(name, action, trial, timeout=5.0, **params)
        except SearchError as e:  # no live driver, or the driver refused: a conflict
            raise ApiError(409, str(e)) from e
        return {"name": name, "action": action, "trial": trial, "message": message}

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _search_record(name: str) -> dict[str, Any]:
        record = registry.read("searches", name)
        if record is None:
            known = sorted(r.get("name", "?") for r in registry.records("searches"))
            raise ApiError(404, f"No search {name!r} in the registry at "
                                f"{registry.kind_dir('searches')}; known: "
                                f"{', '.join(known) or 'none'}.")
        return record

    def _open(self, name: str, record: dict[str, Any] | None = None) -> Store:
        record = record or self._search_record(name)
        try:
            return open_store(record["store"], readonly=True)
        except KaleError as e:
            raise ApiError(410, f"The store of search {name!r} at {record['store']} cannot "
                                f"be read ({e}).") from e

    @staticmethod
    def _describe(record: dict[str, Any]) -> tuple[SearchShape, dict[str, Any]]:
        """Return a search's summary and its store's ``search()`` (empty when unreadable)."""
        name = str(record.get("name"))
        shape: SearchShape = {
            "name": name, "store": str(record.get("store", "")),
            "cluster": record.get("cluster"), "started": record.get("started"),
            "state": "unknown",
            # The driver removes its channel file when it ends.
            "alive": driver_alive(name),
            "metric": None, "mode": None, "planned": None, "trials": {}, "best": None,
        }
        try:
            with open_store(record["store"], readonly=True) as store:
                info = store.search()
                definition = info["definition"]
                summary = summarize_store(store, mode=definition.get("mode"),
                                          planned=definition.get("trials"))
        except Exception as e:  # deleted or unreadable store: say so, list the rest
            shape["state"] = f"unreadable: {e}"
            return shape, {}
        shape["state"] = str(info.get("state"))
        shape["metric"] = definition.get("metric")
        shape["mode"] = definition.get("mode")
        shape["planned"] = summary.planned
        shape["trials"] = summary.counts
        shape["best"] = cast(Any, summary.best)
        return shape, info


def _check_since(since: int) -> None:
    if not 0 <= since <= MAX_INT:
        raise _bad(f"Query argument 'since' must be a row id >= 0 and <= {MAX_INT}, but "
                   f"got since={since}; use the last_rowid of the previous answer.")


def _rows_since(store: Store, since: int, *, trial: int | None = None,
                limit: int | None = None) -> tuple[list[MetricRow], bool]:
    """Return the store's metric rows after row id ``since``, and whether more remain.

    The rows are ``trial``'s, or all trials' when it is None; the first ``limit`` of them.
    """
    # One row past the limit, read in SQL, says whether more remain.
    rows = store.metrics(trial, since_rowid=since, limit=None if limit is None else limit + 1)
    if limit is None or len(rows) <= limit:
        return rows, False
    return rows[:limit], True


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (JSON has no NaN)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _numbers(numbers: set[int]) -> str:
    return ", ".join(map(str, sorted(numbers))) or "none yet"


__all__ = ["ApiError", "KaleManager"]
