"""Bob's probes in the two-user test: run as bob, against what alice runs.

Bob uses every tool he has: his own kale (API and command line), HTTP with and
without his own token, raw TCP, TLS, Dask comms and zmq sockets on every port alice
listens on (found in ``/proc/net/tcp``, which every user can read), her files and
her processes' ``/proc`` entries. Each probe is one line of the JSON written to stdout:
``{"probe": ..., "target": ..., "succeeded": bool, "detail": ...}``; what bob could
read anyway (command lines, bytes a socket gave him) is returned as ``loot`` for the
test to search for alice's secrets.

Argument: a JSON object with ``alice_uid``, ``paths`` (alice's folders and files),
``clusters`` (ids), ``search``, ``store``, ``channel`` (its address), ``ipp_file``,
``dask_address``, ``jupyter`` (alice's server URL) and ``hosts`` (addresses to dial).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ARGS: dict[str, Any] = json.loads(sys.argv[1])
RESULTS: list[dict[str, Any]] = []
LOOT: list[str] = []
INFO: list[str] = []  # what bob found out on the way (not probes)
BOB: dict[str, Any] = {}  # bob's own Dask certificate
_LOCK = threading.Lock()


def record(probe: str, target: str, succeeded: bool, detail: Any = "") -> None:
    with _LOCK:
        RESULTS.append({"probe": probe, "target": target, "succeeded": bool(succeeded),
                        "detail": str(detail)[:300]})


def attempt(probe: str, target: str, action: Callable[[], Any], limit: float = 15) -> None:
    """Run ``action``; it succeeded (a breach) unless it raised or did not end in ``limit`` s."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, action()))
        except Exception as e:  # every refusal counts, whatever its type
            outcome.append((False, f"{type(e).__name__}: {e}"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    succeeded, detail = outcome[0] if outcome else (False, f"no answer within {limit} s")
    record(probe, target, succeeded, detail)


# --- files and processes -------------------------------------------------------------


def probe_files() -> None:
    for path in ARGS["paths"]:
        if os.path.isdir(path) or path.endswith("/"):
            attempt("list folder", path, lambda p=path: os.listdir(p))
            attempt("create file in folder", path,
                    lambda p=path: os.close(os.open(os.path.join(p, "bob-was-here"),
                                                     os.O_CREAT | os.O_EXCL | os.O_WRONLY)))
        else:
            attempt("read file", path, lambda p=path: Path(p).read_bytes()[:64])
            attempt("write file", path,
                    lambda p=path: os.close(os.open(p, os.O_WRONLY | os.O_APPEND)))
            attempt("stat file", path, lambda p=path: os.stat(p).st_size)


def alice_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{entry}/status").read_text()
                uid = next(line.split()[1] for line in status.splitlines()
                           if line.startswith("Uid:"))
                if int(uid) == ARGS["alice_uid"]:
                    pids.append(int(entry))
    return pids


def probe_processes() -> None:
    pids = alice_pids()
    INFO.append(f"{len(pids)} processes of alice's in /proc")
    for pid in pids:
        with contextlib.suppress(OSError):  # what every user may read: searched for secrets
            LOOT.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
        attempt("read environ", f"pid {pid}", lambda p=pid: Path(f"/proc/{p}/environ").read_text())
        attempt("list open files", f"pid {pid}", lambda p=pid: os.listdir(f"/proc/{p}/fd"))
        attempt("signal process", f"pid {pid}", lambda p=pid: os.kill(p, 0))
    return None


# --- ports -----------------------------------------------------------------------------


def listening_ports() -> list[tuple[str, int]]:
    """(address, port) of every TCP socket alice listens on, from /proc/net/tcp[6]."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] != "0A" or int(parts[7]) != ARGS["alice_uid"]:
                    continue
                if int(parts[1].rsplit(":", 1)[1], 16) not in ARGS["scope"]:
                    continue
                hex_addr, hex_port = parts[1].split(":")
                port = int(hex_port, 16)
                if len(hex_addr) == 8:
                    addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_addr)[::-1])
                else:
                    addr = "::"
                found.add((addr, port))
    targets = set()
    for addr, port in found:
        hosts = ARGS["hosts"] if addr in ("0.0.0.0", "::") else [addr]
        targets.update((h, port) for h in hosts)
    return sorted(targets)


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=2):
        return True
    return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_get(url: str, headers: dict[str, str] | None = None, method: str = "GET",
             body: bytes | None = None, timeout: float = 10) -> tuple[int, bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=body)
    # Redirects are not followed: one to a login page is a refusal, not the page asked for.
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         _NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(4096)
    except urllib.error.HTTPError as e:
        return e.code, b""


DATA_PATHS = ("/status", "/json/identity.json", "/info/main/workers.html", "/metrics",
              "/api/contents", "/api/kernels", "/kale/api/clusters", "/kale/api/searches")


def speaks_http(host: str, port: int, tls: bool) -> bool:
    """Whether the port answers a request line as a web server does (HTTP or HTTPS)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=10) as raw:
        sock: Any = raw
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(raw)
        sock.settimeout(10)
        sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        return bool(sock.recv(5) == b"HTTP/")
    return False


def probe_http(host: str, port: int) -> None:
    """GET the pages that hold data (Dask dashboard, Jupyter, kale's API) from a web server."""
    for scheme in ("http", "https"):
        if not speaks_http(host, port, tls=scheme == "https"):
            continue
        for path in DATA_PATHS:
            get_page(f"{scheme}://{host}:{port}{path}")
        return
    record("HTTP GET without token", f"{host}:{port}", False, "not a web server")


def get_page(url: str) -> None:
    try:
        code, body = http_get(url, timeout=20)
    except Exception as e:
        record("HTTP GET without token", url, False, f"{type(e).__name__}: {e}")
        return
    LOOT.append(body.decode(errors="replace"))
    record("HTTP GET without token", url, 200 <= code < 300, f"HTTP {code}")


def probe_dashboard() -> None:
    """Alice's dashboard at the address her registry would give (bob can scan for it too).

    Without a certificate, with bob's own (another CA's), and over plain HTTP.
    """
    base = ARGS["dashboard"].rsplit("/", 1)[0]
    plain = "http" + base[len("https"):] if base.startswith("https:") else base
    bob_tls = ssl.create_default_context()
    bob_tls.check_hostname = False
    bob_tls.verify_mode = ssl.CERT_NONE
    # Security.temporary() holds PEM text, not paths: into a file of bob's own
    pem = Path(tempfile.mkdtemp(prefix="bob-cert-")) / "bob.pem"
    pem.write_text(BOB["security"].tls_client_cert + "\n" + BOB["security"].tls_client_key)
    bob_tls.load_cert_chain(str(pem))
    for path in ("/status", "/json/identity.json", "/info/main/workers.html"):
        get_page(base + path)
        get_page(plain + path)
        url = base + path
        attempt("HTTPS GET with bob's own certificate", url,
                lambda u=url: _ok(urllib.request.urlopen(u, context=bob_tls, timeout=10)))


def _ok(response: Any) -> bytes:
    """The body of a 2xx answer (loot); raise on any other."""
    with response:
        body = bytes(response.read(4096))
    LOOT.append(body.decode(errors="replace"))
    if not 200 <= response.status < 300:
        raise RuntimeError(f"HTTP {response.status}")
    return body


async def dask_identity(address: str, security: Any) -> Any:
    from distributed.comm import connect

    kwargs = security.get_connection_args("client") if security is not None else {}
    comm = await connect(address, timeout=3, **kwargs)
    try:
        await comm.write({"op": "identity", "reply": True})
        return await asyncio.wait_for(comm.read(), 3)
    finally:
        comm.abort()


def probe_dask(host: str, port: int) -> None:
    for scheme, security in (("tcp", None), ("tls", BOB["security"])):
        address = f"{scheme}://{host}:{port}"
        attempt(f"Dask comm ({scheme}, bob's own certificate)" if security else
                "Dask comm (plain TCP)", address,
                lambda a=address, s=security: asyncio.run(dask_identity(a, s)))


def probe_raw(host: str, port: int) -> None:
    """Send junk on a raw TCP connection; any answer is loot, not a breach by itself."""
    def junk() -> bytes:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"\x00\x01GET / HTTP/1.0\r\n\r\n{\"op\": \"identity\"}\n")
            s.settimeout(1.5)
            with contextlib.suppress(OSError):
                LOOT.append(s.recv(4096).decode(errors="replace"))
        return b""

    with contextlib.suppress(OSError):
        junk()


def probe_zmq(targets: list[tuple[str, int]]) -> None:
    """Channel frames under bob's key, unsigned ipyparallel requests, and subscriptions."""
    import zmq

    from kale_ext.channel import new_key
    from kale_ext.channel._wire import REJECT, encode_batch, encode_body, sign

    ctx = zmq.Context.instance()
    bad_key = new_key()
    payload = encode_batch((0, 0, 0), 10_000,
                           [encode_body("report", time.time(), {"loss": -1.0, "step": 10_000})])
    ipp_header = json.dumps({"msg_id": "bob-1", "msg_type": "queue_request", "session": "bob",
                             "username": "bob", "version": "5.3", "date": "2026-01-01"})
    ipp_frames = [b"<IDS|MSG>", b"", ipp_header.encode(), b"{}", b"{}", b"{}"]
    sockets: list[tuple[str, str, Any]] = []
    for host, port in targets:
        url = f"tcp://{host}:{port}"
        for kind in ("channel", "ipyparallel"):
            for socket_type in (zmq.DEALER, zmq.REQ):
                s = ctx.socket(socket_type)
                s.linger = 0
                s.connect(url)
                frames = [sign(bad_key, payload), payload] if kind == "channel" else ipp_frames
                with contextlib.suppress(zmq.ZMQError):
                    s.send_multipart(frames, zmq.NOBLOCK)
                name = "REQ" if socket_type == zmq.REQ else "DEALER"
                sockets.append((f"zmq {name}: {kind} frames signed with bob's key"
                                if kind == "channel" else
                                f"zmq {name}: unsigned ipyparallel request", url, s))
        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(url)
        sockets.append(("zmq SUB: read what a PUB socket broadcasts", url, sub))
    poller = zmq.Poller()
    for _, _, s in sockets:
        poller.register(s, zmq.POLLIN)
    got: dict[Any, list[bytes]] = {}
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        for s, _ in poller.poll(200):
            with contextlib.suppress(zmq.ZMQError):
                got.setdefault(s, []).extend(s.recv_multipart(zmq.NOBLOCK))
    for probe, url, s in sockets:
        frames = got.get(s, [])
        LOOT.extend(f.decode(errors="replace") for f in frames)
        # The channel answers a frame it rejects with the bare word: that is a refusal.
        answered = [f for f in frames if f not in (b"", REJECT)]
        record(probe, url, bool(answered), f"{len(frames)} frames received: {frames[:4]!r}")
        s.close()


# --- bob's own kale, API and command line ------------------------------------------------


def probe_kale() -> None:
    import kale_ext as kale
    from kale_ext.channel import ChannelClient, new_key
    from kale_ext.store import SQLiteStore

    mine = {c.id for c in kale.clusters()}
    for cid in ARGS["clusters"]:
        record("kale.clusters() lists alice's cluster", cid, cid in mine, sorted(mine))
        attempt("kale.connect(alice's cluster)", cid, lambda c=cid: kale.connect(c))
        attempt("kale.stop(alice's cluster)", cid, lambda c=cid: kale.stop(c))
    names = {s.get("name") for s in kale.searches()}
    record("kale.searches() lists alice's search", ARGS["search"], ARGS["search"] in names,
           sorted(n for n in names if n))
    attempt("kale.control(alice's search, stop)", ARGS["search"],
            lambda: kale.control(ARGS["search"], "stop", timeout=3))
    attempt("kale.Search.resume(alice's store)", ARGS["store"],
            lambda: kale.Search.resume(ARGS["store"]))
    attempt("open alice's store read-only", ARGS["store"],
            lambda: SQLiteStore(Path(ARGS["store"]), readonly=True))

    def report_with_own_key() -> Any:
        client = ChannelClient(ARGS["channel"], new_key(), trial=0, heartbeat=0.5,
                               resend_after=0.5)
        try:
            return client.send("report", {"loss": -1.0, "step": 99_999}, timeout=4)
        finally:
            client.close(timeout=0.5)

    attempt("report to alice's channel with bob's key", ARGS["channel"], report_with_own_key)

    def dask_client() -> Any:
        from distributed import Client

        with Client(ARGS["dask_address"], timeout=4) as c:
            return c.scheduler_info()

    attempt("distributed.Client to alice's scheduler", ARGS["dask_address"], dask_client)

    def ipp_client() -> Any:
        import ipyparallel

        return ipyparallel.Client(url_file=ARGS["ipp_file"], timeout=4).ids

    attempt("ipyparallel.Client with alice's cluster file", ARGS["ipp_file"], ipp_client)

    def with_alice_state() -> Any:
        env = dict(os.environ, DASK_KALE__STATE_DIR=ARGS["state_dir"])
        code = "import kale_ext as k; print([c.id for c in k.clusters()])"
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise PermissionError(proc.stderr.strip().splitlines()[-1])
        return proc.stdout

    attempt("kale with alice's state dir", ARGS["state_dir"], with_alice_state)


def probe_cli() -> None:
    kale = os.path.join(os.path.dirname(sys.executable), "kale")
    cid = ARGS["clusters"][0]
    listing = [["cluster", "list"], ["search", "list"]]
    refused = [["cluster", "stop", cid], ["cluster", "status", cid],
               ["search", "show", ARGS["search"]], ["search", "show", ARGS["store"]],
               ["search", "stop", ARGS["search"]]]
    procs = [(args, subprocess.Popen([kale, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True))
             for args in listing + refused]
    for args, proc in procs:
        out, _ = proc.communicate(timeout=120)
        target = "kale " + " ".join(args)
        if args in listing:
            leaked = [x for x in [*ARGS["clusters"], ARGS["search"]] if x in out]
            record("CLI lists alice's work", target, bool(leaked), leaked or out[-200:])
        else:
            record("CLI acts on alice's work", target, proc.returncode == 0,
                   f"rc {proc.returncode}: {out.strip()[-200:]}")


def probe_jupyter() -> None:
    base = ARGS["jupyter"]
    cid, name = ARGS["clusters"][0], ARGS["search"]
    calls = [("GET", "/kale/api/clusters", None), ("GET", "/kale/api/searches", None),
             ("GET", f"/kale/api/clusters/{cid}", None),
             ("GET", f"/kale/api/searches/{name}/trials", None),
             ("DELETE", f"/kale/api/clusters/{cid}", None),
             ("POST", f"/kale/api/searches/{name}/control", b'{"action": "stop"}'),
             ("POST", "/kale/api/clusters", b'{"kind": "local", "prologue": ["id"]}'),
             ("GET", "/api/contents", None), ("POST", "/api/kernels", b"{}"),
             ("GET", "/api/sessions", None),
             # her dashboard through her server (kale's proxy, with her certificate)
             ("GET", f"/kale/clusters/{cid}/dashboard/status", None),
             ("GET", f"/kale/clusters/{cid}/dashboard/json/identity.json", None)]
    bob_token = ARGS["bob_token"]
    for how, headers, query in (("no token", {}, ""),
                                ("bob's token", {"Authorization": f"token {bob_token}"}, ""),
                                ("bob's token in the URL", {}, f"?token={bob_token}")):
        for method, path, body in calls:
            url = base + path + query
            try:
                code, data = http_get(url, headers=headers, method=method, body=body)
            except Exception as e:
                record(f"HTTP {method} with {how}", url, False, f"{type(e).__name__}: {e}")
                continue
            LOOT.append(data.decode(errors="replace"))
            record(f"HTTP {method} with {how}", url, 200 <= code < 300, f"HTTP {code}")
    # curl, as bob would type it
    for args in (["-H", f"Authorization: token {bob_token}", f"{base}/kale/api/clusters"],
                 [f"{base}/kale/api/searches"]):
        proc = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args],
                              capture_output=True, text=True, timeout=30)
        code = int(proc.stdout or 0)
        record("curl", " ".join(args[-1:]), 200 <= code < 300, f"HTTP {code}")


def main() -> None:
    faulthandler.dump_traceback_later(200, exit=True)  # a hung probe shows where it hangs
    # Import once, here: threads importing the same modules at once can deadlock.
    import distributed.comm  # noqa: F401
    import ipyparallel  # noqa: F401
    import zmq  # noqa: F401
    from distributed.security import Security

    import kale_ext.search
    import kale_ext.store  # noqa: F401

    BOB["security"] = Security.temporary()
    targets = listening_ports()
    open_targets = [t for t in targets if reachable(*t)]
    INFO.append(f"{len(open_targets)} of alice's listening sockets reachable")
    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(f) for f in (probe_files, probe_processes, probe_cli,
                                             probe_jupyter, probe_dashboard)]
        futures += [pool.submit(f, *t) for t in open_targets
                    for f in (probe_http, probe_dask, probe_raw)]
        probe_zmq(open_targets)
        probe_kale()
        for future in futures:
            future.result()
    print(json.dumps({"results": RESULTS, "loot": LOOT, "info": INFO,
                      "ports": [f"{h}:{p}" for h, p in open_targets]}))


if __name__ == "__main__":
    main()
