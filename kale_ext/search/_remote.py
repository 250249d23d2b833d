"""A search's driver in a process of its own, and the handle a kernel keeps on it.

Started from a Jupyter kernel, a search's driver does not live in the kernel: ``python
-m kale_ext.search._daemon SPEC`` opens the search's store, connects to its cluster and
runs the driver until the search ends. The kernel that started it, any other kernel
(``kale.search(name)``), the sidebar and ``kale search ...`` are its clients: they read
the store (SQLite in WAL mode: readers never block the driver) and send controls over
the search's own authenticated channel. A kernel restart, a culled server or a closed
browser leave the trials running. When the driver's process dies, ``resume`` starts a
new one from the store, exactly as after a crash of an in-kernel driver.

The daemon's command takes ``kale.daemon-prefix`` in front, as a cluster's daemon does,
so that on a hub whose servers are batch jobs it runs as a small job of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_ext import config, registry
from kale_ext._errors import SearchError
from kale_ext.search._control import channel_file, control, driver_alive
from kale_ext.search._runs import TrialRun

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kale_ext.clusters import Cluster
    from kale_ext.search._search import Search

MODES = ("auto", "process", "kernel")
_POLL_S = 0.1


def in_kernel() -> bool:
    """Whether this process is a Jupyter (IPython) kernel."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def reachable(cluster: Cluster) -> bool:
    """Whether another process can connect to ``cluster`` (it is in the registry)."""
    return registry.read("clusters", cluster.id) is not None


def detached(detach: bool | None, cluster: Cluster) -> bool:
    """Whether a search on ``cluster`` runs its driver in a process of its own.

    ``detach`` wins when given; else ``kale.search-driver`` says: ``"process"``,
    ``"kernel"`` or ``"auto"`` (its own process when started from a Jupyter kernel).
    """
    if detach is None:
        mode = config.get("search-driver", "auto")
        if mode not in MODES:
            raise SearchError(f"kale.search-driver must be one of {', '.join(MODES)}, but "
                              f"got {mode!r}; set it in kale.yaml or DASK_KALE__SEARCH_DRIVER.")
        detach = mode == "process" or (mode == "auto" and in_kernel())
        if detach and not reachable(cluster):
            return False  # a cluster only this process holds: the driver stays here
    elif detach and not reachable(cluster):
        raise SearchError(
            f"detach=True needs a cluster other processes can connect to, but cluster "
            f"{cluster.id} is not in kale's registry; start it with kale.start_cluster(), "
            "or pass detach=False to run the driver in this process.")
    return bool(detach)


def driver_record(launch: str | None) -> dict[str, Any]:
    """Return the registry fields naming the process that runs a search's driver."""
    return {"driver_pid": os.getpid(), "driver_host": socket.gethostname(),
            "launch": launch}


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def spawn(search: Search, cluster: Cluster, *, log_to: str | None) -> None:
    """Start the driver of ``search`` in a process of its own; return once it runs.

    Raises
    ------
    SearchError
        When the process exits first (its log's last lines say why) or does not come up
        within ``kale.start-timeout`` seconds.
    """
    folder = registry.private_dir("searches", search.name)
    launch = secrets.token_hex(8)
    spec = {"store": str(search.store_path), "cluster": cluster.id, "kind": cluster.kind,
            "log_to": log_to, "launch": launch, "cwd": os.getcwd(),
            "path": [p for p in sys.path if p and os.path.isdir(p)]}
    spec_path = folder / "driver.json"
    fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    run_dir = folder / "run"  # its cwd: a batch job of its own writes ../daemon.log
    run_dir.mkdir(mode=0o700, exist_ok=True)
    log_path = folder / "daemon.log"
    prefix = config.get("daemon-prefix") or []
    prefix = shlex.split(prefix) if isinstance(prefix, str) else [str(p) for p in prefix]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as log:
        # A driver listens where it runs: a prefix that submits it may place it anywhere.
        env = {**os.environ, "KALE_DAEMON_ANY_NODE": "1"}
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "kale_ext.search._daemon", str(spec_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
            start_new_session=True, close_fds=True, env=env)
    threading.Thread(target=proc.wait, daemon=True, name=f"kale-reap-{search.name}").start()
    deadline = time.monotonic() + float(config.get("start-timeout", 120))
    while time.monotonic() < deadline:
        record = registry.read("searches", search.name) or {}
        if record.get("launch") == launch and channel_file(search.name).exists():
            return
        if proc.poll() is not None:
            raise SearchError(
                f"The driver process of search {search.name!r} exited with code "
                f"{proc.returncode} before it started:\n{_tail(log_path)}\n"
                f"Full log: {log_path}")
        time.sleep(_POLL_S)
    raise SearchError(f"The driver process of search {search.name!r} did not start within "
                      f"kale.start-timeout; see {log_path}.")


class _Ended:
    """The ``done`` event of a driver in another process: set once it stopped running."""

    def __init__(self, name: str) -> None:
        self.name = name

    def is_set(self) -> bool:
        return not driver_alive(self.name)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True


class DriverProcess:
    """A kernel's handle on a search driver that runs in another process.

    It offers what :class:`kale_ext.Search` uses of an in-process driver: whether it
    runs, its end, its error, the trials (read from the store) and the controls (sent
    over the search's channel). ``resume()`` of the whole search starts a new driver
    process from the store when the last one died.
    """

    started = True

    def __init__(self, search: Search, cluster_id: str | None) -> None:
        self.search = search
        self.cluster_id = cluster_id
        self.done = _Ended(search.name)

    @property
    def name(self) -> str:
        return self.search.name

    @property
    def running(self) -> bool:
        return driver_alive(self.name)

    @property
    def error(self) -> BaseException | None:
        """Why the search did not end well, once its driver stopped; None otherwise."""
        if self.running:
            return None
        info = self.search.store.search()
        if info["state"] == "failed":
            return SearchError(info.get("reason") or "the driver failed")
        if info["state"] == "running":  # its process ended without ending the search
            log = registry.private_dir("searches", self.name) / "daemon.log"
            return SearchError(
                f"The driver process of search {self.name!r} ended while the search ran "
                f"(killed, or its job ended; see {log}). Continue it with "
                f"kale.search({self.name!r}).resume() or kale search resume {self.name}.")
        return None

    @property
    def runs(self) -> dict[int, TrialRun]:
        """The trials as the store has them now."""
        return {r.number: TrialRun.from_record(r, r.checkpoint)
                for r in self.search.store.trials()}

    def stop(self, trial: int | None = None) -> None:
        control(self.name, "stop", trial)

    def pause(self, trial: int | None = None) -> None:
        control(self.name, "pause", trial)

    def resume(self, trial: int | None = None) -> None:
        if trial is None and not self.running:
            resume(self.name, cluster_id=self.cluster_id)
            return
        control(self.name, "resume", trial)

    def restart(self, trial: int, params: Mapping[str, Any]) -> None:
        control(self.name, "restart", trial, **params)


def resume(name: str, *, cluster_id: str | None = None) -> str:
    """Start a new driver process for search ``name`` from its store; return a message.

    ``cluster_id`` defaults to the cluster the search last ran on (its registry record).
    """
    from kale_ext.clusters import connect
    from kale_ext.search._search import Search

    if driver_alive(name):
        raise SearchError(f"Search {name!r} already has a running driver.")
    record = registry.read("searches", name)
    if record is None:
        raise SearchError(f"No search {name!r} in the registry; resume a store file with "
                          "kale.Search.resume(path, cluster=...).")
    cluster_id = cluster_id or record.get("cluster")
    if not cluster_id:
        raise SearchError(f"Search {name!r} does not name its cluster; give one: "
                          f"kale search resume {name} --cluster ID.")
    cluster = connect(cluster_id)
    try:
        search = Search.resume(record["store"], cluster=cluster, start=False, detach=True)
        search.start()
    finally:
        cluster.disconnect()
    return f"resumed search {name} in a new driver process on cluster {cluster_id}"


def attach(name: str) -> Search:
    """Return a handle on the registered search ``name``, running or not, from any process.

    ``kale.search(name)`` is this function.

    The handle reads the store and steers the running driver; it never writes the store.
    """
    from kale_ext.search._resume import load_search
    from kale_ext.search._search import Search

    record = registry.read("searches", name)
    if record is None:
        known = sorted(str(r.get("name", "?")) for r in registry.records("searches"))
        raise SearchError(f"No search {name!r} in the registry; known: "
                          f"{', '.join(known) or 'none'}.")
    search = load_search(Search, Path(record["store"]), cluster=None, fn=None, readonly=True)
    search._attach(record.get("cluster"))
    return search
