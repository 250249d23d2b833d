"""Thin REST handlers under ``<base_url>/kale/api``.

Each parses, calls the manager off the event loop and answers JSON. Every handler is
authenticated and authorized.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from kale_ext._errors import ClusterNotFound, ConfigError, KaleError
from kale_ext.server._manager import MAX_METRIC_ROWS, ApiError, KaleManager

AUTH_RESOURCE = "kale"


class KaleHandler(APIHandler):
    """Base: the manager, its executor and the mapping of errors to HTTP statuses."""

    auth_resource = AUTH_RESOURCE

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
            raise web.HTTPError(e.status, _escape(str(e))) from e
        except ClusterNotFound as e:
            raise web.HTTPError(404, _escape(str(e))) from e
        except ConfigError as e:
            raise web.HTTPError(400, _escape(str(e))) from e
        except KaleError as e:  # a batch system refused, a cluster is unreachable, ...
            raise web.HTTPError(500, _escape(str(e))) from e

    def body(self) -> Any:
        """Parse the JSON body (None when empty); 400 naming the error when it is not JSON."""
        if not self.request.body:
            return None
        try:
            return json.loads(self.request.body)
        except ValueError as e:
            raise web.HTTPError(400, _escape(f"The request body is not valid JSON: {e}.")) from e

    def int_argument(self, key: str, default: int, rule: str) -> int:
        """Query argument ``key`` as an integer; 400 naming it and ``rule`` otherwise."""
        text = self.get_query_argument(key, str(default))
        try:
            return int(text)
        except ValueError as e:
            raise web.HTTPError(400, _escape(
                f"Query argument {key!r} must be {rule}, but got {key}={text!r}."
            )) from e

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


def _escape(message: str) -> str:
    # tornado formats log_message with %; a literal % in a message must survive that.
    return message.replace("%", "%%")


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
    @web.authenticated
    @authorized
    async def delete(self, record_id: str) -> None:
        self.reply(await self.call(self.manager.dismiss_failed_start, record_id))


class TrialsHandler(KaleHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.reply(await self.call(self.manager.trials, name))


class MetricsHandler(KaleHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, trial: str) -> None:
        since = self.int_argument("since", 0, "an integer row id")
        self.reply(await self.call(self.manager.metrics, name, int(trial), since))


class SearchMetricsHandler(KaleHandler):
    """One metric of every trial, incrementally: one request per sidebar poll."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        since = self.int_argument("since", 0, "an integer row id")
        limit = self.int_argument("limit", MAX_METRIC_ROWS,
                                  f"an integer between 1 and {MAX_METRIC_ROWS}")
        metric = self.get_query_argument("metric", None)
        self.reply(await self.call(self.manager.search_metrics, name, since, metric, limit))


class ControlHandler(KaleHandler):
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
    (rf"searches/{_ID}/trials/(\d+)/metrics", MetricsHandler),
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
