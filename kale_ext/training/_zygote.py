"""Warm rank processes: a per-worker process that has imported torch and forks the ranks.

A rank runs in a process of its own (a fresh process group, its own environment, an
end that does not take the worker down). Starting Python and importing torch for every
rank costs seconds; the first rank on a worker therefore starts a *zygote*,
``python -m kale_ext.training._zygote FD``, which imports kale, cloudpickle, numpy and
torch once and then forks one child per rank. A child is a copy of that freshly
imported process, never of one that ran anything: each run starts from the same state,
with the rank's environment, working folder, import path and output file set, and
numpy's and torch's random generators seeded from the OS as in a new interpreter
(Python's ``random`` reseeds itself at a fork). The zygote never touches CUDA, so a
child initialises its GPUs itself. The one thing a run leaves in the zygote is what
its ranks loaded with ``kale.cached`` (see :mod:`._cache`), read back before the next
fork so that later ranks start with it.

The zygote is started by the launch's probe of the worker, so its imports overlap the
rest of the launch. The worker talks to its zygote over a Unix ``SOCK_SEQPACKET`` pair
(one JSON message a datagram, open files passed along, such as rank 0's held
rendezvous socket). The zygote exits when the worker's end closes (the worker died);
its children then see their parent change and end themselves, as a rank started
directly by its worker does.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from kale_ext.training._torch import LISTEN_FD_ENV

#: Modules the zygote imports before it forks (those that are installed).
PRELOAD = ("kale_ext.training._rank", "kale_ext.training._cache", "kale_ext.training._torch",
           "cloudpickle", "psutil", "numpy", "torch", "torch.distributed")
_MAX_MESSAGE = 1 << 20


class ZygoteGone(RuntimeError):
    """The zygote ended (it was killed, or failed to start)."""


class Zygote:
    """The worker's handle on its zygote: fork ranks, learn how they ended."""

    def __init__(self, env: dict[str, str]) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kale_ext.training._zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, env=env, close_fds=True)
        finally:
            theirs.close()
        self.env = env
        self._sock = mine
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._pids: dict[int, int] = {}  # request id -> child pid (or -1: the fork failed)
        self._codes: dict[int, int] = {}  # child pid -> exit code
        self._ready = False
        self._gone = False
        threading.Thread(target=self._read, daemon=True, name="kale-zygote-reader").start()

    @property
    def alive(self) -> bool:
        return not self._gone and self.proc.poll() is None

    def _read(self) -> None:
        try:
            while True:
                data = self._sock.recv(_MAX_MESSAGE)
                if not data:
                    break
                message = json.loads(data)
                with self._cond:
                    if "ready" in message:
                        self._ready = True
                    elif "id" in message:
                        self._pids[int(message["id"])] = int(message["pid"])
                    elif "code" in message:
                        self._codes[int(message["pid"])] = int(message["code"])
                    self._cond.notify_all()
        except OSError:
            pass
        finally:
            with self._cond:
                self._gone = True
                self._cond.notify_all()

    def spawn(self, argv: list[str], *, log: str, env: dict[str, str], cwd: str,
              path: list[str], fds: list[int], timeout: float = 600.0) -> int:
        """Fork a child running ``_rank.main(*argv)``; return its pid.

        ``fds`` are passed to the child (their numbers there are in
        ``env[LISTEN_FD_ENV]``, set here); ``timeout`` bounds the zygote's imports.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._gone, timeout):
                raise ZygoteGone(f"the rank launcher (pid {self.proc.pid}) did not finish "
                                 f"its imports within {timeout:g} s")
            if self._gone:
                raise ZygoteGone(f"the rank launcher (pid {self.proc.pid}) ended "
                                 f"(exit code {self.proc.poll()})")
            request_id = next(self._ids)
        request = {"id": request_id, "argv": argv, "log": log, "env": env, "cwd": cwd,
                   "path": path}
        socket.send_fds(self._sock, [json.dumps(request).encode()], fds)
        with self._cond:
            self._cond.wait_for(lambda: request_id in self._pids or self._gone)
            pid = self._pids.pop(request_id, None)
        if pid is None or pid < 0:
            raise ZygoteGone(f"the rank launcher (pid {self.proc.pid}) could not fork")
        return pid

    def wait(self, pid: int) -> int | None:
        """Wait for the child ``pid`` to end; its exit code (None: the zygote ended first)."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._codes or self._gone)
            return self._codes.pop(pid, None)

    def close(self) -> None:
        """End the zygote (children it forked run on to their end)."""
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


_zygotes: dict[tuple[str, ...], Zygote] = {}
_zygotes_lock = threading.Lock()


def zygote() -> Zygote:
    """Return this worker's zygote, started on first use.

    A new one is started when the last ended, or when the worker's environment changed
    since it started (the zygote's imports read it: thread counts, library paths).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    key = (sys.executable, *sorted(f"{k}={v}" for k, v in env.items()))
    with _zygotes_lock:
        z = _zygotes.get(key)
        if z is None or not z.alive:
            for old_key, old in list(_zygotes.items()):  # at most one per worker
                old.close()
                del _zygotes[old_key]
            z = _zygotes[key] = Zygote(env)
        return z


# -- the zygote's side ---------------------------------------------------------------


def _preload() -> None:
    import importlib
    import importlib.util

    for name in PRELOAD:
        try:
            if importlib.util.find_spec(name.split(".")[0]) is not None:
                importlib.import_module(name)
        except Exception as e:  # a broken optional module is the rank's to report
            print(f"kale rank launcher: could not import {name}: {e}", file=sys.stderr)


def serve(fd: int) -> None:
    """Run the zygote on the socket ``fd`` until the worker's end closes."""
    import selectors
    import shutil
    import tempfile

    from kale_ext.training import _cache

    sock = socket.socket(fileno=fd)
    _preload()
    # Where ranks hand over what they loaded with kale.cached (read before each fork).
    cache_dir = tempfile.mkdtemp(prefix="kale-cache-")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_MESSAGE, 8)
                if not data:  # the worker is gone
                    shutil.rmtree(cache_dir, ignore_errors=True)
                    os._exit(0)
                request = json.loads(data)
                _cache.absorb(cache_dir)
                request["env"][_cache.CACHE_DIR_ENV] = cache_dir
                try:
                    pid = os.fork()
                except OSError:
                    pid = -1
                if pid == 0:
                    _child(request, fds, [sock.fileno(), wake_r, wake_w])
                for f in fds:
                    os.close(f)
                sock.send(json.dumps({"id": request["id"], "pid": pid}).encode())
            else:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            _reap(sock)


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}).encode())


def _child(request: dict[str, Any], fds: list[int], close: list[int]) -> None:
    """Become the rank: its output file, environment, folder and path; never returns."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for f in close:
            os.close(f)
        out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.close(null)
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]
        os.environ.clear()
        os.environ.update(request["env"])
        if fds:
            os.environ[LISTEN_FD_ENV] = str(fds[0])
        os.chdir(request["cwd"])
        sys.path[:] = request["path"]
        sys.argv = ["-m kale_ext.training._rank", *request["argv"]]
        _reseed()
        from kale_ext.training._rank import main

        main(*request["argv"])
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(1)


def _reseed() -> None:
    """Seed numpy's and torch's global generators from the OS, as a new process does."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
