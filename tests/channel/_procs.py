"""Processes the channel tests start and kill: reporting clients and a store-backed server."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kale_ext.channel import ChannelClient, ChannelServer, Message
from kale_ext.store import Store


def report(args: argparse.Namespace) -> None:
    """Send ``count`` reports without blocking, flush, close."""
    with ChannelClient(args.address, bytes.fromhex(args.key), args.trial, rank=args.rank) as c:
        c.send("start", {"pid": 0})
        for i in range(args.count):
            c.send("report", {"step": i, "loss": 1.0 / (i + 1)}, block=False)
        c.flush(timeout=60)
    print("done", flush=True)


def idle(args: argparse.Namespace) -> None:
    """Send a start, then only heartbeats until killed."""
    client = ChannelClient(args.address, bytes.fromhex(args.key), args.trial, heartbeat=0.1)
    client.send("start", {"pid": 0})
    print("started", flush=True)
    time.sleep(3600)


def serve(args: argparse.Namespace) -> None:
    """A driver stand-in: persist to the store, seeded from it; record re-deliveries."""
    store = Store.open(args.store)
    known = store.delivered()
    dups = Path(args.dups)

    def handler(batch: list[Message]) -> None:
        for m in batch:
            if m.seq >= 0 and m.seq <= known.get(m.stream, -1):
                with dups.open("a") as f:
                    f.write(f"{m.stream} {m.seq}\n")
        store.append(batch)
        for m in batch:
            known[m.stream] = max(known.get(m.stream, -1), m.seq)
        time.sleep(args.delay)  # a slow driver lets unacknowledged messages pile up

    server = ChannelServer(bytes.fromhex(args.key), handler, host="127.0.0.1", port=args.port,
                           delivered=known)
    server.start()
    print(server.address, flush=True)
    time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("report", "idle"):
        p = sub.add_parser(name)
        p.add_argument("address")
        p.add_argument("key")
        p.add_argument("trial", type=int)
        p.add_argument("--rank", type=int, default=0)
        p.add_argument("--count", type=int, default=0)
    p = sub.add_parser("serve")
    p.add_argument("key")
    p.add_argument("port", type=int)
    p.add_argument("store")
    p.add_argument("dups")
    p.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    {"report": report, "idle": idle, "serve": serve}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
