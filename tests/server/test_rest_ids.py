"""REST ids (clusters, failed starts, searches, trial numbers) are checked against
``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`` before anything reads the registry: an encoded
``..%2F`` never reaches a file, and the 400 names the value, the rule and the fix."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import AsyncHTTPClient

from kale_ext import registry
from kale_ext.server._checks import ID_RULE

# (method, path with {id}, body)
ID_ROUTES = [
    ("GET", "clusters/{id}", None), ("PATCH", "clusters/{id}", {"workers": 1}),
    ("DELETE", "clusters/{id}", None), ("DELETE", "failed-starts/{id}", None),
    ("GET", "searches/{id}", None), ("DELETE", "searches/{id}", None),
    ("GET", "searches/{id}/trials", None), ("GET", "searches/{id}/trials/0/metrics", None),
    ("GET", "searches/{id}/metrics", None), ("POST", "searches/{id}/control",
                                             {"action": "stop"}),
]
# As a client puts them in the URL (percent-encoded): the server decodes them.
BAD_IDS = ["..%2F..%2Fsecret", "..%2Fsecret", "..", ".hidden", "-rf", "a%2Fb", "a%00b",
           "a%20b", "a%0A", "x" * 65, "%C3%A9t%C3%A9", "a;rm", "~root", "a%25b"]


@pytest.fixture
def raw(http_server_client, jp_base_url, jp_auth_header):
    """``await raw(method, path, body)`` -> (status, JSON) with the path sent as given."""

    async def call(method: str, path: str, body=None):
        url = http_server_client.get_url(f"{jp_base_url}kale/api/{path}")
        if body is None and method in ("POST", "PATCH"):
            body = {}
        response = await AsyncHTTPClient().fetch(
            url, method=method, headers=jp_auth_header, raise_error=False,
            body=None if body is None else json.dumps(body), allow_nonstandard_methods=True)
        return response.code, json.loads(response.body) if response.body else None

    return call


@pytest.fixture
def planted(tmp_path):
    """A record outside the registry's kind folders that a traversal would reach."""
    secret = registry.kind_dir("searches").parent / "secret.json"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text(json.dumps({"name": "secret", "store": str(tmp_path / "s.sqlite")}))
    yield secret
    secret.unlink(missing_ok=True)


@pytest.mark.parametrize(("method", "route", "body"), ID_ROUTES)
async def test_bad_ids_are_400_naming_the_value_the_rule_and_the_fix(raw, planted, method,
                                                                     route, body):
    for bad in BAD_IDS:
        path = route.format(id=bad)
        status, data = await raw(method, path, body=body)
        assert status == 400, (method, path, status, data)
        message = data["message"]
        assert ID_RULE in message and "must match" in message, message
        assert "lists" in message, message  # the fix: an id that a listing gives
    assert planted.exists()  # nothing deleted through a traversal


async def test_a_traversal_does_not_read_a_record_outside_the_registry(raw, planted):
    status, data = await raw("GET", "searches/..%2Fsecret")
    assert status == 400 and "Search name '../secret'" in data["message"], data
    status, data = await raw("DELETE", "searches/..%2Fsecret")
    assert status == 400 and planted.exists()
    # A literal % in a value reaches the client as one %, not as tornado's escaped %%.
    status, data = await raw("GET", "clusters/a%25b")
    assert status == 400 and "Cluster id 'a%b'" in data["message"], data


async def test_trial_numbers_are_bounded(raw):
    for bad in ["9" * 5000, "-1", "1e3", "%D9%A3", "0x10"]:
        status, data = await raw("GET", f"searches/s/trials/{bad}/metrics")
        assert status == 400, (bad, data)
        assert "Trial number" in data["message"] and "between 0 and" in data["message"]
    status, data = await raw("GET", "searches/s/metrics?since=" + "9" * 30)
    assert status == 400 and "'since'" in data["message"], data


async def test_good_ids_still_reach_the_manager(api):
    status, data = await api("GET", "clusters", "kc-0a1b.2_c")
    assert status == 404 and "kc-0a1b.2_c" in data["message"]
    status, data = await api("GET", "searches", "S" + "x" * 63)
    assert status == 404 and "No search" in data["message"]
