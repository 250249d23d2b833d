"""A light start for cluster daemons: a helper that imported Dask once forks them.

A Dask cluster's daemon is a detached Python process (so the cluster outlives the
kernel). Starting Python and importing ``distributed`` and ``dask_jobqueue`` costs it
one to several seconds before its scheduler can listen. After a first start, kale
leaves a *helper* behind: ``python -m kale_ext.clusters._daemon_start NAME`` imports
the daemon's modules once and, asked on a Unix socket, forks a new daemon: its own
session, working folder, log file and the asking process's environment (Dask's
configuration is read anew from it), exactly the command line ``python -m
kale_ext.clusters._dask_daemon SPEC`` would run. The helper never runs a cluster itself,
so every daemon starts from the same freshly imported state.

The socket is in Linux's abstract namespace, named after the user and a fingerprint
of the Python and kale installation; both ends check the other's user id. One helper
serves every state folder of its user (the spec names the folder). It ends after
:data:`IDLE_S` seconds without a request, and when a kale module it imported has
changed on disk: it then answers no request (that start runs its daemon the ordinary
way, and leaves a new helper). Where anything fails, a daemon is started the ordinary
way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IDLE_S = 1200.0  # a helper nobody asked for this long exits
_TICK_S = 60.0  # how often an idle helper checks that kale's files are unchanged
PRELOAD = ("kale_ext.clusters._dask_daemon", "distributed", "distributed.deploy.local",
           "distributed.nanny", "dask_jobqueue", "dask_jobqueue.slurm",
           # What a scheduler imports as it starts its HTTP server and dashboard: some 500
           # modules (bokeh, jupyter-server-proxy, prometheus), seconds of a daemon's start.
           "distributed.dashboard.scheduler", "cryptography.x509")
_MAX_MESSAGE = 1 << 20
_KALE_ROOT = str(Path(__file__).parent.parent)  # kale_ext's folder, spelt as __file__ is


def _fingerprint() -> str:
    """Return what a helper's imports depend on: Python, the import path, kale's place."""
    text = json.dumps([sys.executable, os.environ.get("PYTHONPATH", ""), _KALE_ROOT])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _kale_stamps() -> dict[str, int]:
    """Return the modification times of the kale modules this process imported."""
    root = _KALE_ROOT
    stamps = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path.startswith(root):
            with contextlib.suppress(OSError):
                stamps[path] = os.stat(path).st_mtime_ns
    return stamps


def _changed(stamps: dict[str, int]) -> bool:
    """Whether any of the files of ``stamps`` changed (or went) since."""
    for path, stamp in stamps.items():
        try:
            if os.stat(path).st_mtime_ns != stamp:
                return True
        except OSError:
            return True
    return False


def helper_name() -> str:
    """Return the abstract socket name of this user's helper for this installation."""
    return f"kale-daemon-helper-{os.getuid()}-{_fingerprint()}"


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class ForkedDaemon:
    """A daemon forked by the helper: ``Popen``'s ``pid``, ``poll``, ``wait``, ``terminate``.

    It is not this process's child, so its exit code is not known: ``returncode`` is
    1 once it has gone (its log and error file say why).
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                with open(f"/proc/{self.pid}/stat") as f:
                    gone = f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
            except OSError:
                gone = True
            if gone:
                self.returncode = 1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.1)
        return int(self.returncode or 0)

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 15)


def fork_daemon(spec_path: Path, *, cwd: Path, log_fd: int,
                timeout: float = 10.0) -> ForkedDaemon | None:
    """Ask the helper for a daemon of ``spec_path``; None when there is no helper."""
    name = helper_name()
    request = {"argv": [str(spec_path)], "cwd": str(cwd), "env": dict(os.environ)}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(timeout)
            sock.connect("\0" + name)
            if _peer_uid(sock) != os.getuid():  # someone else holds the name: not ours
                return None
            socket.send_fds(sock, [json.dumps(request).encode()], [log_fd])
            answer = json.loads(sock.recv(_MAX_MESSAGE) or b"{}")
    except (OSError, ValueError):
        return None
    pid = answer.get("pid")
    return ForkedDaemon(int(pid)) if isinstance(pid, int) and pid > 0 else None


def _usable() -> bool:
    """Whether daemons may be forked: asked for, and not under a daemon prefix.

    The helper is opt-in (``KALE_DAEMON_HELPER=1``): a daemon forked from it is not a
    child of the starting process, and a stop of a cluster whose forked daemon was
    killed has been seen to wait out the client's connect timeout. A
    ``kale.daemon-prefix`` launcher (a batch job of its own, say) must start the
    daemon's command itself.
    """
    from kale_ext import config

    return (os.environ.get("KALE_DAEMON_HELPER") == "1"
            and not config.get("daemon-prefix"))


def spawn_forked(spec_path: Path, cwd: Path, log_fd: int) -> Any:
    """Return a :class:`ForkedDaemon` for ``spec_path`` from the helper, or None.

    None when there is no helper (or a daemon prefix is set): start it the ordinary way.
    """
    if not _usable():
        return None
    return fork_daemon(spec_path, cwd=cwd, log_fd=log_fd)


def prepare() -> None:
    """Leave a helper behind for the next start, if none runs; never raises."""
    try:
        if _usable():
            start_helper()
    except Exception:  # a later start then runs its daemon the ordinary way
        pass


def start_helper() -> None:
    """Start this user's helper in the background, unless one runs."""
    name = helper_name()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        try:
            sock.connect("\0" + name)
            return  # one is there
        except OSError:
            pass
    subprocess.Popen([sys.executable, "-m", "kale_ext.clusters._daemon_start", name],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def wait_for_helper(timeout: float) -> bool:
    """Wait until this user's helper answers; whether it did."""
    name = helper_name()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            try:
                sock.connect("\0" + name)
                return True
            except OSError:
                time.sleep(0.1)
    return False


# -- the helper's side ---------------------------------------------------------------


def serve(name: str) -> None:
    """Import the daemon's modules, then fork a daemon per request until idle."""
    import importlib

    import dask.config

    for module in PRELOAD:
        # dask_jobqueue and bokeh are optional; a route that fails fails in the daemon too
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    for module in dask.config.get("distributed.scheduler.http.routes", default=[]) or []:
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.bind("\0" + name)  # listening only once the imports are done
    except OSError:  # another helper of the same name won the race
        return
    sock.listen(16)
    sock.settimeout(_TICK_S)
    stamps = _kale_stamps()
    asked = time.monotonic()
    while True:
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            if time.monotonic() - asked > IDLE_S or _changed(stamps):
                return
            continue
        asked = time.monotonic()
        with conn:
            try:
                if _peer_uid(conn) != os.getuid():
                    continue
                if _changed(stamps):  # kale was edited: its daemon must import it anew
                    sock.close()  # before answering, so that a new helper can start
                    conn.send(json.dumps({"stale": True}).encode())
                    return
                data, fds, _flags, _addr = socket.recv_fds(conn, _MAX_MESSAGE, 1)
                if not data or not fds:
                    continue
                pid = _fork(json.loads(data), fds[0], [sock.fileno(), conn.fileno()])
                os.close(fds[0])
                conn.send(json.dumps({"pid": pid}).encode())
            except OSError:
                continue


def _fork(request: dict[str, Any], log_fd: int, close: list[int]) -> int:
    """Fork twice (the daemon is nobody's child here); return the daemon's pid."""
    read, write = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            os.close(read)
            os.setsid()
            daemon = os.fork()
            if daemon == 0:
                os.close(write)
                # Its own process group, as a daemon started by Popen(start_new_session)
                # leads one: kale stops a dead daemon's workers through that group.
                os.setpgid(0, 0)
                _become_daemon(request, log_fd, close)
            os.write(write, str(daemon).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        text = f.read()
    os.waitpid(first, 0)
    return int(text or b"-1")


def _become_daemon(request: dict[str, Any], log_fd: int, close: list[int]) -> None:
    code = 1
    try:
        for fd in close:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import dask.config

        dask.config.refresh()  # the asking process's DASK_* variables and files
        from kale_ext.clusters._dask_daemon import main

        sys.argv = [sys.argv[0], *request["argv"]]
        code = main(list(request["argv"]))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1])
