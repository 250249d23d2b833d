"""A cluster's Dask dashboard through its owner's Jupyter server.

``<base_url>kale/clusters/<id>/dashboard/<path>`` answers for the dashboard at the
address in the cluster's record: pages and files over HTTP(S), the live plots' bokeh
websockets (``.../ws``) both ways. The dashboard serves TLS only to a client holding the
cluster's certificate, which lives in the owner's private cluster folder; this server
runs as the owner, reads it and presents it, so the dashboard opens for whoever passes
this server's own login (its token, or the hub's) and for nobody else.

What reaches the dashboard is the path, the query without ``token`` and a few plain
request headers: never the Jupyter credentials (cookies, ``Authorization``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import httpclient, web, websocket

from kale_ext import registry
from kale_ext.server._checks import ApiError, check_id

AUTH_RESOURCE = "kale"
# Request headers passed on to the dashboard, response headers passed back.
_REQUEST_HEADERS = ("Accept", "Accept-Language", "User-Agent", "If-None-Match",
                    "If-Modified-Since", "Cache-Control")
_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "Etag", "Last-Modified", "Expires")
TIMEOUT_S = 30.0


def prefix(base_url: str, cluster_id: str) -> str:
    """Return the path under which this server shows the dashboard of ``cluster_id``."""
    return url_path_join(base_url, "kale", "clusters", cluster_id, "dashboard")


def _target(cluster_id: str) -> tuple[str, Any]:
    """Return the dashboard's ``scheme://host:port`` and the TLS context to reach it with.

    Raises 404 when there is no such cluster or it has no dashboard.
    """
    from kale_ext.clusters import ClusterRecord, dashboard_client_context

    data = registry.read("clusters", cluster_id)
    if data is None:
        raise web.HTTPError(404, f"No cluster {cluster_id!r} is registered; use an id that "
                                 "GET kale/api/clusters lists.")
    record = ClusterRecord.from_dict(data)
    if not record.dashboard:
        raise web.HTTPError(404, f"Cluster {cluster_id!r} ({record.backend}) has no dashboard.")
    link = urlsplit(record.dashboard)
    context = None
    if link.scheme == "https":
        if not record.security:
            raise web.HTTPError(502, f"Cluster {cluster_id!r}'s dashboard uses TLS but its "
                                     "record names no credentials folder.")
        context = dashboard_client_context(record.security)
    return f"{link.scheme}://{link.netloc}", context


def _check(handler: JupyterHandler) -> None:
    """Check the cluster id of the URL (authenticated users only: others get a 403)."""
    if handler.current_user is None:
        return
    try:
        check_id("cluster", handler.path_args[0])
    except ApiError as e:
        raise web.HTTPError(e.status, str(e).replace("%", "%%")) from e


def _query(handler: JupyterHandler) -> str:
    """Return the request's query without Jupyter's ``token``."""
    pairs = [(k, v.decode(errors="replace")) for k, values in
             handler.request.query_arguments.items() if k != "token" for v in values]
    return f"?{urlencode(pairs)}" if pairs else ""


class DashboardHandler(JupyterHandler):
    """Pages and files of a cluster's dashboard (GET, HEAD)."""

    auth_resource = AUTH_RESOURCE

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        _check(self)

    @web.authenticated
    @authorized
    async def get(self, cluster_id: str, path: str | None) -> None:
        await self._forward(cluster_id, path, "GET")

    @web.authenticated
    @authorized
    async def head(self, cluster_id: str, path: str | None) -> None:
        await self._forward(cluster_id, path, "HEAD")

    async def _forward(self, cluster_id: str, path: str | None, method: str) -> None:
        mine = prefix(self.base_url, cluster_id)
        if not path:
            self.redirect(f"{mine}/status")
            return
        base, context = _target(cluster_id)
        headers = {k: self.request.headers[k] for k in _REQUEST_HEADERS
                   if k in self.request.headers}
        request = httpclient.HTTPRequest(
            base + path + _query(self), method=method, headers=headers, ssl_options=context,
            follow_redirects=False, request_timeout=TIMEOUT_S, decompress_response=True)
        try:
            response = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except Exception as e:  # refused, unreachable: say where and why
            raise web.HTTPError(502, f"The dashboard of cluster {cluster_id!r} at {base} did "
                                     f"not answer: {e}".replace("%", "%%")) from e
        if response.code == 599:
            raise web.HTTPError(502, f"The dashboard of cluster {cluster_id!r} at {base} did "
                                     f"not answer: {response.error}".replace("%", "%%"))
        self.set_status(response.code, response.reason)
        for name in _RESPONSE_HEADERS:
            if name in response.headers:
                self.set_header(name, response.headers[name])
        location = response.headers.get("Location")
        if location:
            if location.startswith(base):
                location = location[len(base):]
            self.set_header("Location", mine + location if location.startswith("/")
                            else location)
        if response.code not in (204, 304) and method != "HEAD":
            self.write(response.body or b"")
        await self.finish()


class DashboardSocketHandler(WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """A dashboard plot's bokeh websocket, passed through both ways."""

    auth_resource = AUTH_RESOURCE
    upstream: websocket.WebSocketClientConnection | None = None

    def initialize(self) -> None:
        self._pending: list[str | bytes] = []
        self._opened = False
        self._protocol: str | None = None

    def set_default_headers(self) -> None:
        """No page headers (CSP and the like) on a websocket upgrade."""

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        await super().prepare(*args, **kwargs)
        _check(self)

    @ws_authenticated
    async def get(self, cluster_id: str, path: str) -> None:
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read",
                                                                AUTH_RESOURCE)):
            raise web.HTTPError(403)
        base, context = _target(cluster_id)
        url = "ws" + base[len("http"):] + path + _query(self)
        offered = [p.strip() for p in self.request.headers.get(
            "Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        request = httpclient.HTTPRequest(url, ssl_options=context, request_timeout=TIMEOUT_S)
        try:
            self.upstream = await websocket.websocket_connect(
                request, subprotocols=offered or None, on_message_callback=self._relay)
        except Exception as e:
            raise web.HTTPError(502, f"The dashboard of cluster {cluster_id!r} at {base} "
                                     f"refused the websocket: {e}".replace("%", "%%")) from e
        self._protocol = self.upstream.selected_subprotocol
        await super().get(cluster_id, path)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """Answer with the subprotocol the dashboard chose (bokeh's ``"bokeh"``)."""
        return self._protocol if self._protocol in subprotocols else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        super().open(*args, **kwargs)
        self._opened = True
        for message in self._pending:
            self._send(message)
        self._pending.clear()

    def _relay(self, message: str | bytes | None) -> None:
        """Pass on a message from the dashboard; None: it closed its end."""
        if message is None:
            self.close()
        elif self._opened:
            self._send(message)
        else:
            self._pending.append(message)

    def _send(self, message: str | bytes) -> None:
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self._close_upstream()

    async def on_message(self, message: str | bytes) -> None:
        if self.upstream is not None:
            try:
                await self.upstream.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                self.close()

    def on_close(self) -> None:
        self._close_upstream()

    def _close_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None


def handlers(base_url: str) -> list[tuple[str, Callable[..., Any]]]:
    """List the dashboard routes: bokeh websockets (paths ending in ``/ws``) first."""
    root = url_path_join(base_url, "kale", "clusters", "([^/]+)", "dashboard")
    return [(root + "(/.+/ws)", DashboardSocketHandler),
            (root + "(/.*)?", DashboardHandler)]
