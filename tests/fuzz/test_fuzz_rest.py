"""Generated bad input for the REST API (``<base_url>/kale/api``): ids, bodies, query strings.

Two layers, each property at least 1,000 generated cases:

- the checks themselves (:mod:`kale_ext.server._checks`, the manager's body checks),
  called directly: every refusal is a 400 naming the field (or the URL's id) and the
  rule, and nothing else is ever raised;
- real HTTP against one real ``jupyter server`` with the kale extension (a process of
  its own, with a private kale state dir holding a stored search, its registry record
  and a failed start): no 500, the server keeps answering, every 4xx is JSON whose
  message names the field and the rule, and nothing stored changes (the state dir's
  files, byte for byte, are the same after every case).

Nothing is timed: a request that gets no answer within ``HANG`` seconds fails its
case as hung. No case can start a cluster: a start body always carries a bad
``workers``, which the server refuses before anything starts. Each test prints how
many cases it ran and what they were answered.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale_ext.server._checks import (
    ID_RULE,
    KERNEL_ONLY,
    MAX_INT,
    ApiError,
    check_id,
    check_overrides,
    check_trial,
)

CASES = 1000
FUZZ = settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
HANG = 30  # seconds without an answer: hung, not slow
SEARCH, FAILED = "seeded-search", "fs-seeded00"
ID_KINDS = ("cluster", "failed-start", "search")
VALID_ID = st.from_regex(ID_RULE, fullmatch=True)
# Ids as users, scripts and attackers write them.
IDS = st.one_of(
    VALID_ID,
    st.text(min_size=1, max_size=80),
    st.text(alphabet="./%\\-_~ \n\t\x00aZ9", min_size=1, max_size=20),
    st.sampled_from(["..", ".", "../registry", "..%2F..%2Fetc", "a/b", "~", "-rf", "x" * 64,
                     "x" * 65, "kc-0", SEARCH, "été", "a\nb", "a\x00", " a"]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
BAD_WORKERS = st.one_of(st.integers(max_value=-1), st.text(max_size=5), st.floats(),
                        st.booleans(), st.lists(st.integers(), max_size=2))
START_KEYS = ("profile", "kind", "backend", "workers", "overrides")
OVERRIDE_KEYS = st.one_of(st.sampled_from(sorted(KERNEL_ONLY)),
                          st.sampled_from(["tls", "queue", "walltime", "memory", "cores",
                                           "job-extra", "death_timeout", "workers"]),
                          st.text(max_size=12))
# Words by which a message states its rule.
RULE_WORDS = ("must", "may not", "allowed", "not valid JSON", "needs", "Unknown", "unknown",
              "either", "only for", "Invalid unicode")


def _report(counts: Counter[str], name: str) -> None:
    total = counts.pop("cases")
    print(f"\nfuzz {name}: {total} cases, " + ", ".join(f"{k} {v}" for k, v in
                                                      sorted(counts.items())))
    assert total >= CASES


def _names_field_and_rule(message: str) -> bool:
    # The field is quoted ('workers'), or the whole body is meant.
    named = "'" in message or "The body of" in message or "request body" in message
    return named and any(word in message for word in RULE_WORDS)


# -- the checks, called directly ---------------------------------------------------------


def test_id_and_trial_checks_refuse_with_the_value_and_the_rule():
    counts: Counter[str] = Counter()

    @FUZZ
    @given(kind=st.sampled_from(ID_KINDS), value=IDS, trial=st.one_of(
        st.integers(min_value=-10, max_value=2**70).map(str), st.text(max_size=30)))
    def case(kind: str, value: str, trial: str) -> None:
        counts["cases"] += 1
        try:
            assert check_id(kind, value) == value
            assert "/" not in value and not value.startswith(".") and len(value) <= 64
            counts["id accepted"] += 1
        except ApiError as e:
            assert e.status == 400 and ID_RULE in str(e) and repr(value) in str(e)
            assert "lists" in str(e)
            counts["id refused"] += 1
        try:
            number = check_trial(trial)
            assert 0 <= number <= MAX_INT and int(trial) == number
            counts["trial accepted"] += 1
        except ApiError as e:
            assert e.status == 400 and "Trial number" in str(e) and "between 0 and" in str(e)
            counts["trial refused"] += 1

    case()
    _report(counts, "REST id and trial checks")


def test_start_override_checks_name_the_key():
    counts: Counter[str] = Counter()

    @FUZZ
    @given(st.dictionaries(OVERRIDE_KEYS, JSON, max_size=5))
    def case(overrides: dict[str, Any]) -> None:
        counts["cases"] += 1
        refused = {k for k in overrides if k.replace("-", "_") in KERNEL_ONLY}
        try:
            check_overrides(overrides)
        except ApiError as e:
            assert e.status == 400
            named = [k for k in overrides if repr(k) in str(e)]
            assert named and ("'tls'" in str(e) or set(named) & refused), str(e)
            counts["refused"] += 1
            return
        assert not refused and overrides.get("tls", True) is True
        counts["passed"] += 1

    case()
    _report(counts, "REST start overrides")


# -- real HTTP against one server --------------------------------------------------------


class Server:
    """A ``jupyter server`` process with the kale extension and a seeded state dir."""

    def __init__(self, root: Path) -> None:
        self.state = root / "kale-state"
        self.token = secrets.token_hex(16)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        (root / "notebooks").mkdir()
        self.log = open(root / "server.log", "w")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "DASK_KALE__STATE_DIR": str(self.state)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
             f"--port={self.port}", f"--ServerApp.token={self.token}",
             "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root / 'notebooks'}",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """Send ``path`` (already URL-encoded) under ``kale/api``; (status, JSON body)."""
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/kale/api/{path}", data=body, method=method,
            headers={"Authorization": f"token {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=HANG) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        except (TimeoutError, urllib.error.URLError) as e:
            raise AssertionError(f"{method} {path}: no answer within {HANG} s ({e}); "
                                 f"server alive: {self.proc.poll() is None}") from e

        def refuse(word: str) -> None:
            raise AssertionError(f"{method} {path}: bare {word} in the reply")

        return status, json.loads(text, parse_constant=refuse) if text else None

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"jupyter server exited; see {self.log.name}"
            try:
                if self.request("GET", "profiles")[0] == 200:
                    return
            except AssertionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"jupyter server did not answer in {timeout} s")

    def fingerprint(self) -> dict[str, str]:
        """Every file under the state dir and its content hash."""
        return {str(p.relative_to(self.state)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.state.rglob("*")) if p.is_file()}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _seed(state: Path) -> None:
    """A stored search with metric rows (a NaN among them), its record, a failed start."""
    import dask.config

    from kale_ext import registry
    from kale_ext.channel import Message
    from kale_ext.store import Store

    with dask.config.set({"kale.state-dir": str(state)}):
        store_path = state / "stores" / f"{SEARCH}.kale.sqlite"
        store_path.parent.mkdir(parents=True, mode=0o700)
        with Store.open(store_path) as store:
            store.create_search({"name": SEARCH, "fn": "train:train", "metric": "loss",
                                 "mode": "min", "algorithm": "random", "trials": 2,
                                 "space": {"lr": {"kind": "uniform"}}})
            store.add_trial(0, {"lr": 0.1})
            store.append([Message(0, 0, 0, i, "report", 1000.0 + i,
                                  {"step": i, "loss": float("nan") if i == 2 else 1 / (i + 1)})
                          for i in range(5)])
        registry.write("searches", SEARCH, {"name": SEARCH, "store": str(store_path),
                                            "cluster": None, "started": 1000.0})
        registry.write("failed-starts", FAILED, {
            "id": FAILED, "time": 1000.0, "kind": "slurm", "backend": "dask",
            "profile": None, "workers": 1, "error": "seeded", "type": "ConfigError"})


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz-rest")
    srv = Server(root)
    try:
        srv.wait()
        _seed(srv.state)
        # Reading a store the first time may add SQLite's side files: read each once
        # before the fingerprints are taken.
        for path in ("searches", f"searches/{SEARCH}", f"searches/{SEARCH}/trials",
                     f"searches/{SEARCH}/metrics", f"searches/{SEARCH}/trials/0/metrics"):
            assert srv.request("GET", path)[0] == 200, path
        yield srv
    finally:
        srv.stop()


def _check(server: Server, before: dict[str, str], method: str, path: str, status: int,
           data: Any, counts: Counter[str]) -> None:
    assert status != 500 and status < 500, (method, path, status, data)
    assert server.proc.poll() is None, f"the server died on {method} {path}"
    if status >= 400:
        assert isinstance(data, dict) and data.get("message"), (method, path, status, data)
        if status == 400:
            assert _names_field_and_rule(data["message"]), (method, path, data)
    counts[f"{status}"] += 1
    assert server.fingerprint() == before, f"{method} {path} changed what is stored"


ID_ROUTES = [("GET", "clusters/{}"), ("PATCH", "clusters/{}"), ("DELETE", "clusters/{}"),
             ("DELETE", "failed-starts/{}"), ("GET", "searches/{}"), ("DELETE", "searches/{}"),
             ("GET", "searches/{}/trials"), ("GET", "searches/{}/metrics"),
             ("GET", "searches/{}/trials/0/metrics"), ("POST", "searches/{}/control"),
             ("GET", "searches/" + SEARCH + "/trials/{}/metrics")]


def test_ids_over_http(server):
    counts: Counter[str] = Counter()
    before = server.fingerprint()

    @FUZZ
    @given(route=st.sampled_from(ID_ROUTES), value=IDS)
    def case(route: tuple[str, str], value: str) -> None:
        counts["cases"] += 1
        method, template = route
        if method == "DELETE" and value in (SEARCH, FAILED):
            value = value + "x"  # deleting the seeded records is allowed, not fuzzed
        path = template.format(urllib.parse.quote(value, safe=""))
        body = b'{"workers": 1}' if method == "PATCH" else (
            b'{"action": "stop"}' if method == "POST" else None)
        status, data = server.request(method, path, body)
        if status == 400 and data and "in the URL must match" in data["message"]:
            assert ID_RULE in data["message"] and repr(value) in data["message"]
        _check(server, before, method, path, status, data, counts)

    case()
    _report(counts, "REST ids over HTTP")


def _body(draw_json: Any) -> bytes:
    return json.dumps(draw_json).encode()


BODIES = st.one_of(
    st.sampled_from([{"workers": 2}, {"minimum": 0, "maximum": 3}, {"action": "stop"},
                     {"action": "pause", "trial": 0}, {"action": "restart", "trial": 0,
                                                       "params": {"lr": 0.5}}]).map(_body),
    JSON.map(_body),
    st.binary(max_size=60),
    st.dictionaries(st.sampled_from(["workers", "minimum", "maximum", "action", "trial",
                                     "params", "n"]), JSON, max_size=4).map(_body),
)
START_BODIES = st.builds(
    lambda extra, overrides, workers: _body({**extra, "overrides": overrides,
                                             "workers": workers}),
    st.dictionaries(st.one_of(st.sampled_from(START_KEYS), st.text(max_size=8)), JSON,
                    max_size=3),
    st.one_of(st.dictionaries(OVERRIDE_KEYS, JSON, max_size=3), JSON),
    BAD_WORKERS,
)


def test_bodies_over_http(server):
    counts: Counter[str] = Counter()
    before = server.fingerprint()

    @FUZZ
    @given(target=st.sampled_from([("PATCH", "clusters/kc-0"), ("POST", "clusters"),
                                   ("POST", f"searches/{SEARCH}/control"),
                                   ("POST", "searches/nope/control")]),
           body=BODIES, start=START_BODIES)
    def case(target: tuple[str, str], body: bytes, start: bytes) -> None:
        counts["cases"] += 1
        method, path = target
        if path == "clusters":
            body = start  # always a bad 'workers': nothing can start
        status, data = server.request(method, path, body)
        if path == "clusters":
            assert status == 400, (body, data)
        _check(server, before, method, path, status, data, counts)

    case()
    _report(counts, "REST bodies over HTTP")


QUERY_KEYS = st.sampled_from(["since", "limit", "metric", "delete_files", "x", ""])
QUERY_VALUES = st.one_of(st.integers(min_value=-2**70, max_value=2**70).map(str),
                         st.text(max_size=30), st.sampled_from(["", "1e3", "0x10", "nan",
                                                                "9" * 5000, " 5", "5_000"]))


def test_query_strings_over_http(server):
    counts: Counter[str] = Counter()
    before = server.fingerprint()

    @FUZZ
    @given(path=st.sampled_from([f"searches/{SEARCH}/metrics", "searches", "clusters",
                                 f"searches/{SEARCH}/trials/0/metrics", f"searches/{SEARCH}",
                                 "failed-starts", "profiles"]),
           query=st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=4),
           raw=st.one_of(st.none(), st.text(max_size=40)))
    def case(path: str, query: list[tuple[str, str]], raw: str | None) -> None:
        counts["cases"] += 1
        text = (urllib.parse.urlencode(query) if raw is None
                else urllib.parse.quote(raw, safe="=&"))
        status, data = server.request("GET", f"{path}?{text}")
        _check(server, before, "GET", f"{path}?{text}", status, data, counts)

    case()
    _report(counts, "REST query strings over HTTP")
