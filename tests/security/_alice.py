"""Alice's kernel in the two-user test: run as alice, steered by lines on stdin.

It starts a local Dask cluster, a local ipyparallel cluster and a search (with its metric
channel) on the Dask one, then answers ``status`` with one JSON line (what is running,
how far the search got, whether both clusters still compute) and ``stop`` by stopping
everything and exiting.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import kale_ext as kale

# A secret alice's engine prints: bob must never read it. It comes in the environment,
# which only alice may read (a command line is readable by everyone).
MARKER = os.environ["ALICE_MARKER"]


def train(config: dict[str, Any]) -> None:
    """Report and checkpoint until stopped."""
    import time

    import kale_ext as kale

    for step in range(100_000):
        kale.report(step=step, loss=config["lr"] / (step + 1))
        if step % 10 == 0:
            kale.save_checkpoint({"step": step, "lr": config["lr"]}, step)
        time.sleep(0.2)


def chatter(marker: str, seconds: float) -> int:
    """Print ``marker`` on an engine (its output goes to the controller's iopub)."""
    import time

    end = time.time() + seconds
    n = 0
    while time.time() < end:
        print(marker, flush=True)
        n += 1
        time.sleep(0.3)
    return n


def say(data: dict[str, Any]) -> None:
    print(json.dumps(data), flush=True)


def main() -> None:
    dask_cluster = kale.start_cluster("local", backend="dask", workers=2)
    ipp_cluster = kale.start_cluster("local", backend="ipyparallel", workers=1)
    search = kale.Search(train, {"lr": kale.uniform(0.1, 1.0)}, metric="loss", mode="min",
                         trials=1, cluster=dask_cluster, name="alice-search", seed=1)
    search.start()
    chat = ipp_cluster.view.apply_async(chatter, MARKER, 600.0)
    deadline = time.time() + 120
    while time.time() < deadline:
        rows = search.results()
        checkpoints = list(Path(search.checkpoint_dir).glob("trial-*/attempt-*/step-*.pt"))
        if len(rows) and "step" in rows and rows["step"].max() >= 3 and checkpoints:
            break
        time.sleep(0.2)
    say({"ready": True})
    for line in sys.stdin:
        command = line.strip()
        if command == "status":
            say(status(search, dask_cluster, ipp_cluster))
        elif command == "stop":
            break
    search.stop()
    search.wait(60)
    chat.abort()
    for cluster in (ipp_cluster, dask_cluster):
        kale.stop(cluster.id)
    say({"stopped": True})


def status(search: Any, dask_cluster: Any, ipp_cluster: Any) -> dict[str, Any]:
    """What is running and whether it still works."""
    rows = search.results()
    steps = int(rows["step"].max()) if len(rows) and "step" in rows else -1
    states = {c.id: c.state for c in kale.clusters()}
    dask_ok = dask_cluster.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    ipp_ok = bool(ipp_cluster.client.queue_status())  # the controller still answers
    return {
        "search": search.name, "running": search.running, "steps": steps,
        "store": str(search.store_path), "checkpoints": str(search.checkpoint_dir),
        "worker_dirs": [w["local_directory"] for w in
                        dask_cluster.client.scheduler_info()["workers"].values()],
        "dask": {"id": dask_cluster.id, "address": dask_cluster.record.address,
                 "dashboard": dask_cluster.record.dashboard,
                 "security": dask_cluster.record.security, "state": states.get(dask_cluster.id),
                 "computes": dask_ok},
        "ipp": {"id": ipp_cluster.id, "file": ipp_cluster.record.address,
                "security": ipp_cluster.record.security, "state": states.get(ipp_cluster.id),
                "engines": len(ipp_cluster.client.ids), "queue_ok": ipp_ok},
    }


if __name__ == "__main__":
    main()
