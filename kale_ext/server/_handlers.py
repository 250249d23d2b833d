"""Thin REST handlers under ``<base_url>/kale/api``.

Each parses, calls the manager off the event loop and answers JSON. Every handler is
authenticated and authorized.
"""

from __future__ import annotations

import asyncio
import json
import math
import numbers
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from kale_ext._errors import ClusterNotFound, ConfigError, KaleError
from kale_ext.server._checks import ApiError, check_id, check_trial
from kale_ext.server._manager import MAX_METRIC_ROWS, KaleManager

AUTH_RESOURCE = "kale"


class KaleHandler(APIHandler):
    """Base: the manager, its executor and the mapping of errors to HTTP statuses."""

    auth_resource = AUTH_RESOURCE
    # What each of the route's path arguments is: an id kind of _checks.ID_KINDS, or "trial".
    path_kinds: tuple[str, ...] = ()

    async def prepare(self) -> None:  # type: ignore[override]
        """Check the ids in the URL before any handler reads the registry with them.

        Only for an authenticated user: a request without credentials gets its 403 from
        the handler's decorators, whatever its URL holds.
        """
        await super().prepare()
        if self.current_user is None:
            return
        try:
            for kind, value in zip(self.path_kinds, self.path_args, strict=False):
                if kind == "trial":
                    check_trial(value)
                else:
                    check_id(kind, value)
        except ApiError as e:
            raise _ApiHTTPError(e.status, str(e)) from e

    @property
    def manager(self) -> KaleManager:
        manager: KaleManager = self.settings["kale_manager"]
        return manager

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking ``fn(*args)`` in the manager's executor; errors become HTTP errors."""
        executor: Executor = self.settings["kale_executor"]
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
        except ApiError as e:
            raise _ApiHTTPError(e.status, str(e)) from e
        except ClusterNotFound as e:
            raise _ApiHTTPError(404, str(e)) from e
        except ConfigError as e:
            raise _ApiHTTPError(400, str(e)) from e
        except KaleError as e:  # a batch system refused, a cluster is unreachable, ...
            raise _ApiHTTPError(500, str(e)) from e

    def body(self) -> Any:
        """Parse the JSON body (None when empty); 400 naming the error when it is not JSON."""
        if not self.request.body:
            return None
        try:
            return json.loads(self.request.body)
        except ValueError as e:
            raise _ApiHTTPError(400, f"The request body is not valid JSON: {e}.") from e

    def int_argument(self, key: str, default: int, rule: str) -> int:
        """Query argument ``key`` as an integer; 400 naming it and ``rule`` otherwise."""
        text = self.get_query_argument(key, str(default))
        try:
            return int(text)
        except ValueError as e:
            shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
            raise _ApiHTTPError(
                400, f"Query argument {key!r} must be {rule}, but got {key}={shown!r}.") from e

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Answer kale's own errors with their message as written, as strict JSON."""
        error = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(error, _ApiHTTPError):
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(finite_json({"message": error.message, "reason": error.reason}))

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(finite_json(data))


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by None, recursively."""
    if isinstance(value, float):  # numpy's float64 too
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k if isinstance(k, str | int) else str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, int):
        return int(value)  # numpy's integers
    if not isinstance(value, int | str | type(None)) and hasattr(value, "__float__"):
        try:  # numpy's float32 and other number types json cannot write
            number = float(value)
        except (TypeError, ValueError):
            return value
        return number if math.isfinite(number) else None
    return value


def finite_json(data: Any) -> str:
    """Return ``data`` as strict JSON: non-finite numbers as ``null``.

    ``json.dumps`` writes bare ``NaN`` and ``Infinity`` by default, which a browser's
    ``JSON.parse`` refuses: one NaN loss would break every reply that carries it.
    """
    return json.dumps(_finite(data), default=str, allow_nan=False)


def _escape(message: str) -> str:
    # tornado formats log_message with %; a literal % in a message must survive that.
    return message.replace("%", "%%")


class _ApiHTTPError(web.HTTPError):
    """An HTTP error whose message the client gets as written (not %-escaped)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, _escape(message))
        self.message = message


class ClustersHandler(KaleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.manager.clusters))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.body()
        self.reply(await self.call(self.manager.start_cluster, {} if body is None else body),
                   status=201)


class ClusterHandler(KaleHandler):
    path_kinds = ("cluster",)

    @web.authenticated
    @authorized
    async def get(self, cluster_id: str) -> None:
        self.reply(await self.call(self.manager.cluster, cluster_id))

    @web.authenticated
    @authorized
    async def patch(self, cluster_id: str) -> None:
        self.reply(await self.call(self.manager.patch_cluster, cluster_id, self.body()))

    @web.authenticated
    @authorized
    async def delete(self, cluster_id: str) -> None:
        self.reply(await self.call(self.manager.stop_cluster, cluster_id))


class ProfilesHandler(KaleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.manager.profiles))


class SearchesHandler(KaleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.manager.searches))


class SearchHandler(KaleHandler):
    path_kinds = ("search",)

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(await self.call(self.manager.search, name))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        """Forget the search; ``?delete_files=1`` deletes its store and checkpoints too."""
        delete_files = self.get_query_argument("delete_files", "0") in ("1", "true")
        self.reply(await self.call(self.manager.forget_search, name, delete_files))


class FailedStartsHandler(KaleHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(await self.call(self.manager.failed_starts))


class FailedStartHandler(KaleHandler):
    path_kinds = ("failed-start",)

    @web.authenticated
    @authorized
    async def delete(self, record_id: str) -> None:
        self.reply(await self.call(self.manager.dismiss_failed_start, record_id))


class TrialsHandler(KaleHandler):
    path_kinds = ("search",)

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        limit = self.int_argument("limit", 0, "an integer >= 0 (0: every trial)")
        offset = self.int_argument("offset", 0, "an integer >= 0")
        state = self.get_query_argument("state", None)
        order = self.get_query_argument("order", "number")
        self.reply(await self.call(self.manager.trials, name, limit, offset, state, order))


class MetricsHandler(KaleHandler):
    path_kinds = ("search", "trial")

    @web.authenticated
    @authorized
    async def get(self, name: str, trial: str) -> None:
        since = self.int_argument("since", 0, "an integer row id")
        self.reply(await self.call(self.manager.metrics, name, int(trial), since))


class SearchMetricsHandler(KaleHandler):
    """One metric of every trial, incrementally: one request per sidebar poll."""

    path_kinds = ("search",)

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        since = self.int_argument("since", 0, "an integer row id")
        limit = self.int_argument("limit", MAX_METRIC_ROWS,
                                  f"an integer between 1 and {MAX_METRIC_ROWS}")
        metric = self.get_query_argument("metric", None)
        self.reply(await self.call(self.manager.search_metrics, name, since, metric, limit))


class ControlHandler(KaleHandler):
    path_kinds = ("search",)

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.reply(await self.call(self.manager.control, name, self.body()))


_ID = r"([^/]+)"
ROUTES: list[tuple[str, type[KaleHandler]]] = [
    ("clusters", ClustersHandler),
    (f"clusters/{_ID}", ClusterHandler),
    ("profiles", ProfilesHandler),
    ("failed-starts", FailedStartsHandler),
    (f"failed-starts/{_ID}", FailedStartHandler),
    ("searches", SearchesHandler),
    (f"searches/{_ID}", SearchHandler),
    (f"searches/{_ID}/trials", TrialsHandler),
    (f"searches/{_ID}/trials/{_ID}/metrics", MetricsHandler),
    (f"searches/{_ID}/metrics", SearchMetricsHandler),
    (f"searches/{_ID}/control", ControlHandler),
]


def bokehjs_dir() -> str:
    """Return the folder of the installed bokeh's own BokehJS files (``bokeh.min.js``, ...)."""
    from bokeh.util.paths import bokehjs_path

    return str(bokehjs_path() / "js")


def handlers(base_url: str) -> list[tuple[Any, ...]]:
    """List the routes under ``<base_url>/kale/api``, and ``<base_url>/kale/static/bokeh``.

    The lab extension loads BokehJS from the latter once per page, from this server (no
    CDN, which compute nodes cannot reach), matching the kernel's bokeh version;
    notebook outputs then need not carry BokehJS each.
    """
    from jupyter_server.base.handlers import AuthenticatedFileHandler

    routes: list[tuple[Any, ...]] = [
        (url_path_join(base_url, "kale", "api", path), handler) for path, handler in ROUTES]
    try:
        folder = bokehjs_dir()
    except ImportError:  # no widget extras here: no panel to draw, nothing to serve
        return routes
    routes.append((url_path_join(base_url, "kale", "static", "bokeh", "(.*)"),
                   AuthenticatedFileHandler, {"path": folder}))
    return routes
