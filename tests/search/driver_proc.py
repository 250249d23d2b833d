"""A search driver in its own process, for the kill-the-driver test.

    python -m tests.search.driver_proc <cluster-id> <store> <workdir>
"""

from __future__ import annotations

import sys

import cloudpickle

import kale_ext as kale
from tests.search import trainables

cloudpickle.register_pickle_by_value(trainables)


def main() -> None:
    cluster_id, store, workdir = sys.argv[1:4]
    cluster = kale.connect(cluster_id)
    space = {"log": f"{workdir}/log.jsonl", "pids": f"{workdir}/pids", "sleep": 0.15,
             "q": kale.uniform(0.1, 1.0), "tag": kale.int(0, 10**9),
             "epochs": kale.choice([4, 30])}
    search = kale.Search(trainables.slow_checkpointed, space, metric="acc", trials=6,
                         cluster=cluster, store=store, report_timeout=3.0, seed=3)
    search.start()
    print("started", flush=True)
    search.wait()


if __name__ == "__main__":
    main()
