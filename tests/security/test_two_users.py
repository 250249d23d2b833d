"""Two users on one machine: bob cannot reach, read, steer or stop what alice runs.

Real Unix users (``alice``, ``bob``; created when missing), real processes: alice runs a
local Dask cluster, a local ipyparallel cluster, a search with its metric channel on the
Dask one, and a jupyter_server with kale's extension under her own token. Bob then
probes with every tool he has (tests/security/_bob.py): his own kale and its command
line, HTTP and curl with his own token and with none, raw TCP, TLS, Dask comms and zmq on
every port alice listens on, her files and her processes' /proc entries. Every probe
must be refused, and alice's clusters and search must run on as before.

Runs as root (it creates the users and switches to them with ``runuser``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
HERE = Path(__file__).resolve().parent
TESTBED_ADDRESS = "10.251.0.1"


def run_as(user: str, args: list[str], env: dict[str, str] | None = None,
           **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``args`` as ``user`` with a clean environment of that user's own."""
    home = pwd.getpwnam(user).pw_dir
    base = {"HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
            "PATH": f"{PYTHON.parent}:/usr/local/bin:/usr/bin:/bin"}
    envs = [f"{k}={v}" for k, v in {**base, **(env or {})}.items()]
    return subprocess.Popen(["runuser", "-u", user, "--", "env", "-i", *envs, *args],
                            text=True, cwd="/", **kwargs)


@pytest.fixture(scope="session")
def two_users() -> dict[str, int]:
    """Make sure ``alice`` and ``bob`` exist and can run the project's Python."""
    if os.geteuid() != 0:
        pytest.fail("tests/security needs root: it creates the users alice and bob and "
                    "runs commands as them with runuser. Run it as root.")
    uids = {}
    for user in ("alice", "bob"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", user],
                           check=True, capture_output=True)
        home = Path(pwd.getpwnam(user).pw_dir)
        home.mkdir(mode=0o700, exist_ok=True)
        uids[user] = pwd.getpwnam(user).pw_uid
        os.chown(home, uids[user], pwd.getpwnam(user).pw_gid)
        check = run_as(user, [str(PYTHON), "-c", "import kale_ext, distributed, ipyparallel"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = check.communicate(timeout=120)
        assert check.returncode == 0, (
            f"{user} cannot run {PYTHON} with kale_ext: {out[-1500:]}. Every folder from / "
            f"to {REPO}/.venv must be searchable (x) by other users and the package files "
            "readable; see `namei -l` of the path.")
    return uids


class Alice:
    """Alice's kernel (tests/security/_alice.py) and her jupyter_server."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.marker = f"alice-engine-output-{secrets.token_hex(8)}"
        self.token = secrets.token_hex(24)
        self.env = {"DASK_KALE__STATE_DIR": str(base / "state"),
                    "DASK_KALE__STORE_DIR": str(base / "stores"),
                    "DASK_KALE__CHECKPOINT_DIR": str(base / "scratch")}
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.kernel = run_as("alice", [str(PYTHON), str(HERE / "_alice.py")],
                             env={**self.env, "ALICE_MARKER": self.marker},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # The token goes in the environment: a command line is readable by every user.
        self.server = run_as("alice", [
            str(PYTHON), "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
            "--ip=127.0.0.1", "--ServerApp.port_retries=0",
            "--ServerApp.jpserver_extensions={'kale_ext.server': True}",
            f"--ServerApp.root_dir={pwd.getpwnam('alice').pw_dir}",
        ], env={**self.env, "JUPYTER_TOKEN": self.token}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def _read(self) -> None:
        assert self.kernel.stdout is not None
        for line in self.kernel.stdout:  # the engine's prints come here too: JSON only
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                if isinstance(data, dict):
                    self.lines.put(data)

    def expect(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.kernel.poll() is None, "alice's kernel exited"
            with contextlib.suppress(queue.Empty):
                data = self.lines.get(timeout=1)
                if key in data:
                    return data
        raise AssertionError(f"alice's kernel gave no {key!r} within {timeout} s")

    def status(self) -> dict[str, Any]:
        assert self.kernel.stdin is not None
        self.kernel.stdin.write("status\n")
        self.kernel.stdin.flush()
        return self.expect("search", 180)

    def server_up(self) -> bool:
        request = urllib.request.Request(f"{self.url}/kale/api/clusters",
                                         headers={"Authorization": f"token {self.token}"})
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5) as r:
            return r.status == 200
        return False

    def pids(self) -> list[int]:
        """Alice's processes started by this test (their state dir says so)."""
        tag = f"DASK_KALE__STATE_DIR={self.env['DASK_KALE__STATE_DIR']}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and tag in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
        return found

    def ports(self) -> list[int]:
        """TCP ports those processes listen on."""
        inodes = set()
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        return sorted(ports)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.kernel.stdin is not None
            self.kernel.stdin.write("stop\n")
            self.kernel.stdin.close()
        for proc, grace in ((self.kernel, 120), (self.server, 1)):
            if grace == 1:
                proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        # What outlives a kernel by design (cluster daemons) when the stop did not end it
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)


@pytest.fixture(scope="module")
def alice(two_users: dict[str, int]) -> Iterator[Alice]:
    base = Path(f"/var/tmp/kale-two-users-{secrets.token_hex(4)}")
    # alice's own folders, open to others on purpose: what protects her work is the mode
    # kale gives the folders it makes inside them.
    for folder in (base, base / "scratch"):
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
        os.chown(folder, two_users["alice"], pwd.getpwnam("alice").pw_gid)
    person = Alice(base)
    try:
        person.expect("ready", 240)
        deadline = time.monotonic() + 120
        while not person.server_up():
            assert person.server.poll() is None, "alice's jupyter_server exited"
            assert time.monotonic() < deadline, "alice's jupyter_server did not come up"
            time.sleep(0.5)
        yield person
    finally:
        person.stop()
        shutil.rmtree(base, ignore_errors=True)


def alice_paths(alice: Alice, status: dict[str, Any]) -> list[str]:
    """Everything of alice's that kale made: folders first, then files."""
    state = alice.base / "state"
    store = Path(status["store"])
    checkpoints = Path(status["checkpoints"])
    trial = sorted(checkpoints.glob("trial-*"))[0]
    attempt = sorted(trial.glob("attempt-*"))[0]  # each attempt checkpoints apart
    dask_dir, ipp_dir = Path(status["dask"]["security"]), Path(status["ipp"]["security"])
    folders = [state, state / "clusters", state / "searches", state / "searches" / status[
        "search"], dask_dir, ipp_dir, ipp_dir / "security", store.parent, checkpoints, trial,
        attempt, Path(pwd.getpwnam("alice").pw_dir)]
    files = [*state.glob("*/*.json"), state / "searches" / status["search"] / "channel.json",
             *dask_dir.glob("*.pem"), dask_dir / "spec.json", *(ipp_dir / "security").glob(
                 "*.json"), store, Path(f"{store}-wal"), Path(f"{store}.lock"),
             sorted(attempt.glob("step-*.pt"))[0]]
    for path in files:
        assert path.exists(), path
    folders += [Path(p) for p in status["worker_dirs"]]  # where Dask workers spill data
    return [f"{p}/" for p in folders] + [str(p) for p in files]


def alice_secrets(alice: Alice, status: dict[str, Any]) -> dict[str, str]:
    """What must never reach bob: keys, tokens, her engines' output."""
    state = alice.base / "state"
    channel = json.loads((state / "searches" / status["search"] / "channel.json").read_text())
    key_pem = (Path(status["dask"]["security"]) / "key.pem").read_text()
    return {"channel key": channel["key_hex"], "jupyter token": alice.token,
            "Dask TLS key": key_pem.splitlines()[1],
            **{f"ipyparallel key {i}": key
               for i, key in enumerate(sorted(_ipp_keys(Path(status["ipp"]["security"]))))},
            "engine output": alice.marker}


def _ipp_keys(profile: Path) -> set[str]:
    """The HMAC key, or with CurveZMQ the controller's keys, from the connection files."""
    keys = set()
    for path in (profile / "security").glob("ipcontroller-*.json"):
        info = json.loads(path.read_text())
        keys.update(str(info[k]) for k in ("key", "curve_serverkey", "curve_secretkey")
                    if info.get(k))
    return keys


@pytest.mark.timeout(600)  # alice's start (two clusters, a search, a server) counts in it
def test_bob_cannot_reach_read_steer_or_stop_alices_work(alice: Alice, two_users):
    before = alice.status()
    assert before["running"] and before["dask"]["computes"] and before["ipp"]["engines"] == 1
    found = alice_secrets(alice, before)
    assert all(found.values()) and any(k.startswith("ipyparallel key") for k in found), found
    hosts = ["127.0.0.1"]
    if any(TESTBED_ADDRESS in a for a in _addresses()):
        hosts.append(TESTBED_ADDRESS)
    args = {"alice_uid": two_users["alice"], "paths": alice_paths(alice, before),
            "clusters": [before["dask"]["id"], before["ipp"]["id"]], "search": before["search"],
            "store": before["store"], "channel": _channel_address(alice, before),
            "ipp_file": before["ipp"]["file"], "dask_address": before["dask"]["address"],
            "jupyter": alice.url, "hosts": hosts, "dashboard": before["dask"]["dashboard"],
            "bob_token": secrets.token_hex(24),
            "state_dir": str(alice.base / "state"),
            # bob finds ports himself (/proc/net/tcp); he probes those of this test's alice
            # only, not those of other tests running as alice at the same time
            "scope": alice.ports()}
    bob = run_as("bob", [str(PYTHON), str(HERE / "_bob.py"), json.dumps(args)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = bob.communicate(timeout=300)
    assert bob.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    results = report["results"]
    loot = "\n".join(report["loot"])
    for name, secret in found.items():
        results.append({"probe": f"find alice's {name} in what bob could read", "target":
                        "command lines, HTTP bodies, socket replies",
                        "succeeded": secret in loot, "detail": ""})

    # bob saw her ports: the probes above dialled the scheduler, controller and channel
    ports = {int(p.rsplit(":", 1)[1]) for p in report["ports"]}
    for address in (before["dask"]["address"], args["channel"]):
        assert int(address.rsplit(":", 1)[1]) in ports, (address, report["ports"])
    assert alice.port in ports

    after = alice.status()
    assert after["running"] and after["steps"] > before["steps"], (before, after)
    assert after["dask"]["state"] == after["ipp"]["state"] == "running", after
    assert after["dask"]["computes"] and after["ipp"]["engines"] == 1 and after["ipp"][
        "queue_ok"], after

    succeeded = [r for r in results if r["succeeded"]]
    kinds: dict[str, list[int]] = {}
    for r in results:
        kinds.setdefault(r["probe"], [0, 0])[r["succeeded"]] += 1
    for kind, (refused, done) in sorted(kinds.items()):
        print(f"  {kind}: {refused + done} tried, {done} succeeded")
    print(f"\nbob's probes: {len(results)} tried, {len(succeeded)} succeeded "
          f"({len(report['ports'])} of alice's sockets probed; {'; '.join(report['info'])})")
    # Her dashboard was probed where it listens, and through her server.
    dashboard = urlsplit(before["dask"]["dashboard"])
    assert dashboard.scheme == "https", before["dask"]["dashboard"]
    probed = {r["target"] for r in results}
    assert any(urlsplit(t).port == dashboard.port for t in probed if "://" in t), probed
    assert any(f"/kale/clusters/{before['dask']['id']}/dashboard/" in t for t in probed)
    assert not succeeded, "\n".join(
        f"{r['probe']} -> {r['target']}: {r['detail']}" for r in succeeded)
    # ... and it opens for alice through her server with her token: the refusals above
    # are bob's, not a dashboard that opens for nobody.
    for page, words in (("status", "Dask"), ("info/main/workers.html", "Worker")):
        status, body = _get(f"{alice.url}/kale/clusters/{before['dask']['id']}/dashboard/"
                            f"{page}", alice.token)
        assert status == 200 and words in body, (
            page, status, re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))[-1500:])


def _get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:  # the server's error page says why
        return e.code, e.read().decode(errors="replace")


def _addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines() if len(line.split()) > 3]


def _channel_address(alice: Alice, status: dict[str, Any]) -> str:
    record = alice.base / "state" / "searches" / f"{status['search']}.json"
    return str(json.loads(record.read_text())["control"])
