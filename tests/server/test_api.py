"""The kale REST API against a real jupyter_server: auth, every route, clear 4xx answers,
and a real local Dask cluster started, scaled and stopped through it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from tornado.httpclient import AsyncHTTPClient

from kale_ext import registry

ROUTES = [
    ("GET", "clusters"), ("POST", "clusters"), ("GET", "clusters/kc-0"),
    ("PATCH", "clusters/kc-0"), ("DELETE", "clusters/kc-0"), ("GET", "profiles"),
    ("GET", "searches"), ("GET", "searches/s"), ("GET", "searches/s/trials"),
    ("GET", "searches/s/trials/0/metrics"), ("GET", "searches/s/metrics"),
    ("POST", "searches/s/control"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_refuses_a_request_without_token(http_server_client, jp_base_url,
                                                           method, path):
    # A raw tornado client: no token header, no cookie, no XSRF.
    url = http_server_client.get_url(f"{jp_base_url}kale/api/{path}")
    body = "{}" if method in ("POST", "PATCH") else None
    response = await AsyncHTTPClient().fetch(url, method=method, body=body, raise_error=False,
                                             allow_nonstandard_methods=True)
    assert response.code == 403, (method, path, response.code)


async def test_profiles_lists_the_default_and_every_profile(api):
    status, data = await api("GET", "profiles")
    assert status == 200
    names = [p["name"] for p in data["profiles"]]
    assert data["default"] in names
    local = next(p for p in data["profiles"] if p["name"] == "local")
    assert local["options"]["kind"] == "local"


async def test_empty_registry_lists_nothing(api):
    assert await api("GET", "clusters") == (200, [])
    assert await api("GET", "searches") == (200, [])


@pytest.mark.parametrize(("body", "words"), [
    ("{not json", ["not valid JSON"]),
    ([1, 2], ["must be a JSON object"]),
    ({"workers": -1}, ["'workers'", ">= 0", "-1"]),
    ({"workers": True}, ["'workers'", "True"]),
    ({"workers": "8"}, ["'workers'", "'8'"]),
    ({"profile": "no-such-profile"}, ["'profile'", "no-such-profile", "known profiles"]),
    ({"profile": ""}, ["'profile'", "non-empty string"]),
    ({"colour": "red"}, ["'colour'", "allowed: profile, kind, backend, workers, overrides"]),
    ({"overrides": {"workers": 2}}, ["'overrides'", "'workers'", "top-level"]),
    ({"overrides": "queue=debug"}, ["'overrides'", "JSON object"]),
    ({"kind": "moon"}, ["'moon'", "local, lsf, pbs, sge, slurm"]),
    ({"backend": "spark"}, ["'spark'", "dask"]),
])
async def test_start_rejects_bad_bodies_naming_field_and_rule(api, body, words):
    status, data = await api("POST", "clusters", body=body)
    assert status == 400, data
    for word in words:
        assert word in data["message"], (word, data["message"])
    assert list(registry.records("clusters")) == []


@pytest.mark.parametrize(("body", "words"), [
    ({"workers": -2}, ["'workers'", ">= 0"]),
    ({"workers": 1, "minimum": 0}, ["either 'workers'", "not both"]),
    ({"minimum": 3, "maximum": 1}, ["'minimum' must not exceed 'maximum'", "minimum=3"]),
    ({"minimum": 1}, ["'maximum'", "None"]),
    ({}, ["needs 'workers'"]),
    ({"n": 2}, ["'n'", "allowed: workers, minimum, maximum"]),
])
async def test_patch_rejects_bad_bodies(api, body, words):
    status, data = await api("PATCH", "clusters", "kc-none", body=body)
    assert status == 400, data
    for word in words:
        assert word in data["message"], (word, data["message"])


async def test_unknown_ids_are_404_with_a_clear_message(api):
    for method, path, body in [("GET", ("clusters", "kc-none"), None),
                               ("PATCH", ("clusters", "kc-none"), {"workers": 2}),
                               ("DELETE", ("clusters", "kc-none"), None)]:
        status, data = await api(method, *path, body=body)
        assert status == 404, (method, data)
        assert "kc-none" in data["message"] and "kale.clusters()" in data["message"]
    for path in [("searches", "nope"), ("searches", "nope", "trials"),
                 ("searches", "nope", "trials", "0", "metrics")]:
        status, data = await api("GET", *path)
        assert status == 404, (path, data)
        assert "No search 'nope'" in data["message"]
    status, data = await api("POST", "searches", "nope", "control", body={"action": "stop"})
    assert status == 404 and "No search 'nope'" in data["message"]


async def _wait(api, path, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        status, data = await api("GET", *path)
        if status == 200 and predicate(data):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on GET {'/'.join(path)}: {data}")
        await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_local_dask_cluster_started_scaled_adapted_and_stopped(api):
    start = asyncio.ensure_future(api("POST", "clusters", body={
        "profile": "local", "kind": "local", "backend": "dask", "workers": 1}))
    # Starting takes seconds in the executor; the server keeps answering meanwhile.
    t0 = time.monotonic()
    status, _ = await api("GET", "profiles")
    answered = time.monotonic() - t0
    assert status == 200
    assert not start.done(), "the start answered before a cheap GET: was it run inline?"
    status, cluster = await start
    assert status == 201, cluster
    assert answered < 2.0
    cid = cluster["id"]
    try:
        assert cluster["state"] == "running" and cluster["n_workers"] == 1
        assert cluster["backend"] == "dask" and cluster["kind"] == "local"
        assert cluster["dashboard"]
        status, listed = await api("GET", "clusters")
        assert status == 200 and [c["id"] for c in listed] == [cid]

        status, answer = await api("PATCH", "clusters", cid, body={"workers": 2})
        assert status == 200 and answer == {"id": cid, "message": "asked for 2 workers"}
        scaled = await _wait(api, ("clusters", cid), lambda c: c["n_workers"] == 2)
        assert len(scaled["workers"]) == 2 and scaled["cores"] >= 2

        status, answer = await api("PATCH", "clusters", cid, body={"minimum": 1, "maximum": 3})
        assert status == 200 and "between 1 and 3" in answer["message"]
    finally:
        status, answer = await api("DELETE", "clusters", cid)
    assert status == 200 and answer["message"] == "stopped"
    assert (await api("GET", "clusters", cid))[0] == 404
    assert await api("GET", "clusters") == (200, [])


def test_shapes_match_the_typescript_interfaces():
    """Every key of every TypedDict in _shapes.py appears in the mirrored interface."""
    import re
    import typing
    from pathlib import Path

    from kale_ext.server import _shapes

    ts = (Path(__file__).parents[2] / "src" / "models.ts").read_text()
    pairs = {"WorkerShape": "IWorker", "JobShape": "IJob", "ClusterShape": "ICluster",
             "StartClusterBody": "IStartClusterBody", "PatchClusterBody": "IPatchClusterBody",
             "ClusterActionShape": "IClusterAction", "ProfileShape": "IProfile",
             "ProfilesShape": "IProfiles", "BestShape": "IBest", "SearchShape": "ISearch",
             "SearchDetailShape": "ISearchDetail", "TrialShape": "ITrial",
             "MetricRowShape": "IMetricRow", "MetricsShape": "IMetrics",
             "SeriesPointShape": "ISeriesPoint", "SearchMetricsShape": "ISearchMetrics",
             "ControlBody": "IControlBody", "ControlShape": "IControl", "ErrorShape": "IError",
             "IdleShape": "IIdle", "FailedStartShape": "IFailedStart", "ForgetShape": "IForget"}
    for py, iface in pairs.items():
        match = re.search(rf"export interface {iface}(?: extends (\w+))? \{{(.*?)\n\}}", ts,
                          re.S)
        assert match, f"no interface {iface} in src/models.ts"
        keys = set(re.findall(r"^\s+(\w+)\??:", match.group(2), re.M))
        if match.group(1):
            parent = re.search(rf"export interface {match.group(1)} \{{(.*?)\n\}}", ts, re.S)
            assert parent
            keys |= set(re.findall(r"^\s+(\w+)\??:", parent.group(1), re.M))
        expected = set(typing.get_type_hints(getattr(_shapes, py)))
        assert keys == expected, (py, iface, keys ^ expected)
    assert json.dumps  # the module's JSON helpers are used by the api fixture
