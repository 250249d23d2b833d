"""The idle timeout of an ipyparallel cluster: a small watcher beside its controller.

ipyparallel's controller keeps no list of connected clients, so the watcher counts the
process that started the cluster (while it lives) as its client, and any task queued,
running or finished since the last look as use. It runs detached, like the controller,
so it outlives the kernel that started both; it stops the cluster through
:func:`kale_ext.clusters.stop` once the :class:`~._idle.IdleClock` runs out, and exits
when the cluster's record is gone. Each look is written to ``idle.json`` in the
cluster's private folder, where :meth:`IPyParallelCluster.status` reads it.

    python -m kale_ext.clusters._ipp_idle <cluster id> <timeout seconds or "none">
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from kale_ext import config, registry
from kale_ext.clusters._base import ClusterRecord
from kale_ext.clusters._idle import IdleClock, check_interval

logger = logging.getLogger("kale_ext.clusters.ipp_idle")

IDLE_FILE = "idle.json"


def spawn(record: ClusterRecord, timeout: float | None) -> None:
    """Start the watcher of ``record``'s cluster, detached; this process is its client."""
    folder = registry.private_dir("clusters", record.id)
    log_fd = os.open(folder / "idle.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = {**os.environ, "DASK_KALE__STATE_DIR": str(config.state_dir()),
           "KALE_IDLE_STARTER": f"{os.getpid()}@{socket.gethostname()}"}
    with os.fdopen(log_fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kale_ext.clusters._ipp_idle", record.id,
             "none" if timeout is None else repr(timeout)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, close_fds=True)
    # Reap the watcher when it exits so that its pid does not linger as a zombie.
    threading.Thread(target=proc.wait, daemon=True, name=f"kale-reap-{record.id}").start()


def read(record: ClusterRecord) -> dict[str, float | None] | None:
    """Return the watcher's last look (timeout, idle_for, left), or None without one."""
    path = registry.private_dir("clusters", record.id) / IDLE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    shown: dict[str, float | None] = data["idle"]
    if shown.get("idle_for") is not None:  # counted on since the look
        age = max(0.0, time.time() - float(data["time"]))
        shown["idle_for"] = float(shown["idle_for"] or 0) + age
        if shown.get("left") is not None:
            shown["left"] = max(0.0, float(shown["left"] or 0) - age)
    return shown


def _activity(client: Any, completed: list[int]) -> bool:
    """Whether any task is queued or running, or finished since the last look."""
    status = client.queue_status()
    done = sum(int(v.get("completed", 0)) for k, v in status.items() if k != "unassigned")
    busy = bool(status.get("unassigned")) or any(
        int(v.get("queue", 0)) or int(v.get("tasks", 0))
        for k, v in status.items() if k != "unassigned")
    busy = busy or done != completed[0]
    completed[0] = done
    return busy


def _look(client: Any, completed: list[int], timeout: float = 10.0) -> bool:
    """Run :func:`_activity`, given up after ``timeout`` s.

    A controller that died mid-query never answers, and ipyparallel's client would wait
    for it forever.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["busy"] = _activity(client, completed)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=run, daemon=True, name="kale-idle-look")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"the controller did not answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return bool(box["busy"])


def _starter_alive() -> bool:
    pid, _, host = os.environ.get("KALE_IDLE_STARTER", "").partition("@")
    return bool(pid) and registry.pid_alive(int(pid), host) is not False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cluster_id, timeout = args[0], None if args[1] == "none" else float(args[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import ipyparallel

    clock = IdleClock(timeout)
    folder = registry.private_dir("clusters", cluster_id)
    client = None
    completed = [-1]
    try:
        while (data := registry.read("clusters", cluster_id)) is not None:
            record = ClusterRecord.from_dict(data)
            if registry.pid_alive(record.owner_pid, record.owner_host) is False:
                logger.info("cluster %s: its controller is gone; nothing to watch", cluster_id)
                break
            now = time.time()
            try:
                if client is None:
                    client = ipyparallel.Client(profile_dir=str(folder / "ipython"),
                                                cluster_id=cluster_id, timeout=10)
                busy = _look(client, completed)
            except Exception as e:  # controller starting or stopping: look again
                logger.info("cluster %s: no answer from the controller: %s", cluster_id, e)
                client = None  # a new connection next time
            else:
                clock.observe(now, clients=["starter"] if _starter_alive() else [], busy=busy)
                with contextlib.suppress(OSError):  # the folder goes with a stop
                    (folder / IDLE_FILE).write_text(json.dumps({"time": now,
                                                                "idle": clock.to_dict(now)}))
                if clock.expired(now):
                    logger.info("stopping cluster %s: no client and no task for %.0f s "
                                "(idle-timeout)", cluster_id, timeout)
                    from kale_ext.clusters import stop

                    with contextlib.suppress(Exception):
                        client.close()
                    client = None
                    with contextlib.suppress(Exception):  # stopped meanwhile by someone
                        stop(cluster_id)
                    break
            time.sleep(check_interval(timeout))
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
    logging.shutdown()
    os._exit(0)  # a look still hanging on a dead controller must not keep this alive


if __name__ == "__main__":
    sys.exit(main())
