"""A cluster's Dask dashboard through its owner's jupyter_server, and nowhere else.

A real local Dask cluster (TLS) and a real jupyter_server with kale's extension: the
dashboard's pages and a live plot's bokeh websocket answer through
``kale/clusters/<id>/dashboard/...`` with the server's token; without it, or with a
wrong one, the server refuses. The dashboard itself listens on loopback only and
completes no TLS handshake with a client lacking the cluster's certificate.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest
import tornado.httpclient
import tornado.websocket
from tornado.httpclient import AsyncHTTPClient

import kale_ext as kale
from kale_ext.clusters import SERVER_BASE_URL, dashboard_client_context, status_html


@pytest.fixture(autouse=True)
def _server_base_url_restored(monkeypatch):
    """The extension tells the kernels it starts its base URL through the environment."""
    monkeypatch.delenv(SERVER_BASE_URL, raising=False)


@pytest.fixture
def cluster():
    c = kale.start_cluster(workers=1)
    try:
        yield c
    finally:
        c.stop()


def _no_cert_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # what anyone could try: trust anything, no cert
    return context


def _fetch(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, context=context, timeout=30) as response:
        return response.status, response.read()


async def test_dashboard_listens_on_loopback_and_asks_for_the_cluster_certificate(cluster):
    link = cluster.record.dashboard
    assert link and urlsplit(link).scheme == "https", link
    assert urlsplit(link).hostname == "127.0.0.1", link
    status, body = await asyncio.to_thread(
        _fetch, link, dashboard_client_context(cluster.record.security))
    assert status == 200 and b"Dask" in body
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)) as refused:
        await asyncio.to_thread(_fetch, link, _no_cert_context())
    # Refused in the TLS handshake (an alert or the connection closed), before any HTTP.
    error = refused.value
    reason = error.reason if type(error) is urllib.error.URLError else error
    assert isinstance(reason, ssl.SSLError | ConnectionError), refused.value


async def test_owner_opens_pages_and_websocket_through_the_server(cluster, jp_fetch,
                                                                  jp_ws_fetch, jp_base_url):
    cid = cluster.id
    page = await jp_fetch("kale", "clusters", cid, "dashboard", "status", request_timeout=60)
    html = page.body.decode()
    assert page.code == 200 and "Dask" in html and "bokeh" in html
    identity = await jp_fetch("kale", "clusters", cid, "dashboard", "json", "identity.json")
    assert json.loads(identity.body)["type"] == "Scheduler"
    workers = await jp_fetch("kale", "clusters", cid, "dashboard", "info", "main",
                             "workers.html")
    assert workers.code == 200 and "Worker" in workers.body.decode()
    # The server's credentials never reach the dashboard: not in what it rendered.
    token = re.search(r"token=([0-9a-f]+)", str(page.request.headers.get("Authorization")))
    assert token is None or token.group(1) not in html

    # The dashboard's own redirect (/ -> /status) stays under the proxied path.
    prefix = f"{jp_base_url}kale/clusters/{cid}/dashboard"
    for parts in (("dashboard",), ("dashboard", "")):
        moved = await jp_fetch("kale", "clusters", cid, *parts, follow_redirects=False,
                               raise_error=False)
        assert moved.code in (301, 302) and moved.headers["Location"] == f"{prefix}/status", (
            parts, moved.code, moved.headers.get("Location"))

    # A live plot's websocket: bokeh's session token from the page, as the browser sends it.
    session = re.search(r'"token":"([^"]+)"', html)
    assert session, html[:500]
    ws = await jp_ws_fetch("kale", "clusters", cid, "dashboard", "status", "ws",
                           subprotocols=["bokeh", session.group(1)])
    try:
        assert ws.selected_subprotocol == "bokeh"
        header = await asyncio.wait_for(ws.read_message(), 60)
        assert header is not None and json.loads(header)["msgtype"] == "ACK", header
    finally:
        ws.close()


@pytest.mark.parametrize("how", ["no token", "wrong token", "wrong token in the URL"])
async def test_dashboard_refused_without_the_servers_token(cluster, http_server_client,
                                                           jp_base_url, how):
    path = f"{jp_base_url}kale/clusters/{cluster.id}/dashboard/"
    headers = {"Authorization": "token not-the-token"} if how == "wrong token" else {}
    query = "?token=not-the-token" if how.endswith("URL") else ""
    for page in ("status", "json/identity.json", "info/main/workers.html"):
        response = await AsyncHTTPClient().fetch(
            http_server_client.get_url(path + page + query), headers=headers,
            raise_error=False, follow_redirects=False)
        assert response.code in (302, 403), (page, response.code)
        assert b"Dask" not in (response.body or b""), page
        if response.code == 302:  # a browser is sent to the login page, nothing else
            assert "/login" in response.headers["Location"], response.headers["Location"]
    url = http_server_client.get_url(path + "status/ws" + query).replace("http", "ws", 1)
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(
            tornado.httpclient.HTTPRequest(url, headers=headers), subprotocols=["bokeh", "x"])
    assert refused.value.code == 403


async def test_bad_or_unknown_cluster_ids(jp_fetch):
    bad = await jp_fetch("kale", "clusters", "..", "dashboard", "status", raise_error=False)
    assert bad.code in (400, 404), bad.code
    bad = await jp_fetch("kale", "clusters", "-x", "dashboard", "status", raise_error=False)
    assert bad.code == 400 and b"must match" in bad.body, bad.body[:300]
    unknown = await jp_fetch("kale", "clusters", "kc-00000000", "dashboard", "status",
                             raise_error=False)
    assert unknown.code == 404, unknown.code  # Jupyter's 404 page shows no message


async def test_cluster_view_in_a_kernel_of_the_server_links_the_proxied_dashboard(
        cluster, jp_fetch, jp_base_url):
    # What a kernel started by this server inherits (the server runs in this process here)
    assert os.environ[SERVER_BASE_URL] == jp_base_url
    html = await asyncio.to_thread(lambda: status_html(cluster.status()))
    href = re.search(r'dashboard: <a href="([^"]+)"', html)
    assert href and href.group(1) == f"{jp_base_url}kale/clusters/{cluster.id}/dashboard/status"
    page = await jp_fetch(*href.group(1)[len(jp_base_url):].split("/"))
    assert page.code == 200 and "Dask" in page.body.decode()


def test_dashboard_address_is_never_every_interface():
    from kale_ext.clusters._dask_tls import dashboard_address

    assert dashboard_address("local", {}) == "127.0.0.1:0"
    for wildcard in ("*", "0.0.0.0", "::", "[::]", ""):
        assert dashboard_address("local", {"interface_host": wildcard}) == "127.0.0.1:0"
        given = {"dashboard_address": f"{wildcard}:8787"}
        assert dashboard_address("local", given) == "127.0.0.1:8787", wildcard
        host = dashboard_address("slurm", {"interface_host": wildcard, **given})
        assert host.rpartition(":")[0] not in ("*", "0.0.0.0", "::", "[::]", ""), host
    assert dashboard_address("slurm", {"interface_host": "10.1.2.3",
                                       "dashboard_address": ":8787"}) == "10.1.2.3:8787"
    assert dashboard_address("local", {"dashboard_address": "127.0.0.2:0"}) == "127.0.0.2:0"
