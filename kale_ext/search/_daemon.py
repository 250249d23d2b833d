"""The process that runs one search's driver: ``python -m kale_ext.search._daemon SPEC``.

The spec (a 0600 JSON file written by :func:`kale_ext.search._remote.spawn`) names the
search's store, its cluster, the working folder and import path of the kernel that
started it, and a launch token that the driver writes into the search's registry record
so that its starter knows it runs. The process ends when the search ends. A TERM or a
kill leaves the search as a crash would: ``resume`` continues it from the store.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path


def _channel_host(wanted: str) -> str:
    """Return where this process's metric channel listens: ``wanted`` if it is ours.

    A cluster's channel address is its scheduler's; a driver run as a batch job of its
    own may land on another node, and listens where this node reaches the workers.
    """
    from kale_ext import channel

    ours = {a for addresses in channel.interfaces().values() for a in addresses}
    if wanted in ours or channel.is_loopback(wanted):
        return wanted
    return channel.channel_host()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kale_ext.search._daemon SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    # Trial functions pickled by reference need the modules the kernel imported them from.
    sys.path[:0] = [p for p in spec.get("path", []) if p not in sys.path]
    if os.path.isdir(spec.get("cwd") or ""):
        os.chdir(spec["cwd"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel's interrupts are not ours
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: "
                                                   "%(message)s")
    from kale_ext.clusters import connect
    from kale_ext.search._search import Search

    cluster = connect(spec["cluster"])
    search = Search.resume(spec["store"], cluster=cluster, start=False, detach=False,
                           log_to=spec.get("log_to"))
    search.channel_host = _channel_host(cluster.channel_host())
    search._launch = spec.get("launch")
    search.start()
    logging.getLogger(__name__).info("driver of search %s runs (pid %d)", search.name,
                                     os.getpid())
    search._driver.done.wait()
    cluster.disconnect()
    return 0 if search._driver.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
