"""Ending an ipyparallel task that does not stop: its engine is killed and replaced.

An engine runs its task in its main thread, where nothing from outside can end a hang
in C code; but every engine has a nanny process beside it, which signals the engine on
the controller's request, wherever it runs. So the engine is sent SIGKILL through its
nanny, the controller lets it go (the task's future fails with ``EngineError``), and
a new engine takes its place: the killed engine's set shrinks by one and a set of one
engine is started (by the adaptive scaling, when it runs).
"""

from __future__ import annotations

import logging
import signal
import time
from concurrent.futures import Future
from typing import Any

from kale_ext._errors import ClusterError

logger = logging.getLogger(__name__)

_GONE_TIMEOUT = 60.0  # seconds for the controller to let a killed engine go


def find_engine(cluster: Any, future: Future[Any], worker: str | None) -> int | None:
    """Return the id of the engine that runs ``future``'s task, else None.

    The controller's task queues say it while it runs; else ``worker`` does: an engine's
    slot name (``engine-3``, as a rank of a distributed trial names it), or the host and
    pid of the engine (``host:pid``, as a one-rank trial names it).
    """
    client = cluster.client
    ids = set(client.ids)
    msg_ids = set(getattr(getattr(future, "native", None), "msg_ids", None) or ())
    if msg_ids:
        for eid, queue in client.queue_status(verbose=True).items():
            if eid in ids and isinstance(queue, dict) and msg_ids & set(queue.get("tasks", ())):
                return int(eid)
    name = worker or ""
    if name.startswith("engine-") and name[7:].isdigit() and int(name[7:]) in ids:
        return int(name[7:])  # a rank names its engine as the cluster's slots do
    host, _, pid = name.rpartition(":")
    if pid.isdigit():
        for eid, info in cluster._engine_info(timeout=1).items():
            if eid in ids and info.get("pid") == int(pid) and info.get("host") == host:
                return int(eid)
    return None


def _engine_set(cluster: Any, eid: int, worker: str | None) -> str | None:
    """Return the engine set of engine ``eid``: as it described itself, or by its pid."""
    known = cluster._info.get(eid, {}).get("engine_set")
    if known:
        return str(known)
    _, _, pid = (worker or "").rpartition(":")
    for set_id, engines in cluster._ipp.engines.items():
        for launcher in getattr(engines, "launchers", {}).values():
            if pid.isdigit() and getattr(launcher, "pid", None) == int(pid):
                return str(set_id)
    return None


def kill_engine_of(cluster: Any, future: Future[Any], worker: str | None) -> str:
    """Kill the engine that runs ``future``'s task and start one in its place.

    Returns what was done, for the log.

    Raises
    ------
    ClusterError
        When no engine runs the task, or the engine outlives its SIGKILL.
    """
    with cluster._lock:
        eid = find_engine(cluster, future, worker)
        if eid is None:
            raise ClusterError(f"Cluster {cluster.id}: no engine runs this task (worker "
                               f"{worker!r}); it has ended, or its engine is gone.")
        set_id = _engine_set(cluster, eid, worker)
        client = cluster.client
        client.send_signal(signal.SIGKILL, targets=[eid], block=True)
    deadline = time.monotonic() + _GONE_TIMEOUT
    while eid in client.ids:
        if time.monotonic() > deadline:
            raise ClusterError(f"Cluster {cluster.id}: engine {eid} was sent SIGKILL and is "
                               f"still registered after {_GONE_TIMEOUT:.0f} s.")
        time.sleep(0.1)
    return f"killed engine {eid} ({worker or 'its engine'}); {_replace(cluster, eid, set_id)}"


def _replace(cluster: Any, eid: int, set_id: str | None) -> str:
    """Start an engine in place of the killed ``eid``; say what was done."""
    with cluster._lock:
        cluster._info.pop(eid, None)
        cluster._refresh()
        sets = cluster._sets
        if set_id in sets:
            sets[set_id] -= 1
            if sets[set_id] <= 0:
                try:
                    cluster._stop_set(set_id)
                except Exception as e:  # its only engine is gone already
                    logger.info("engine set %s: %s", set_id, e)
                    sets.pop(set_id, None)
            cluster._save()
        if cluster._adaptor is not None:
            return "the adaptive scaling starts engines as tasks wait"
        cluster._add_engines(1)
        return "a new engine was started in its place"
