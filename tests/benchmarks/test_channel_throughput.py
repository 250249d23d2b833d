"""Reports per second through the metric channel, against raw zmq PUSH/PULL.

Each sender runs in its own process, as trials do. Measured:

- ``raw PUSH/PULL``: the same JSON messages, one zmq message each, no signing, no acks,
  no store; timed at the receiver from first to last message (the ceiling).
- ``channel, no store``: ChannelClient.send(block=False) + flush into a handler that
  keeps nothing, timed by the sender from first send to the last acknowledgement.
- ``channel + SQLite, batched``: the same into SQLiteStore.append (acks mean durable).
- ``... block=True``: every report waits for its acknowledgement (a round trip and,
  with the store, one SQLite commit per report).

Target, asserted: batched reports stored in SQLite at >= 0.25 of raw PUSH/PULL's rate
(the ingest target of 10,000 reports/s set against the ~40,000/s raw zmq of the 2-core
development machine at its slowest).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import zmq

from kale_ext.channel import ChannelServer, Message, new_key
from kale_ext.store import Store
from tests.benchmarks.targets import Targets

BATCHED, BLOCKING = 50_000, 2_000

SENDER = textwrap.dedent("""
    import json, sys, time
    import zmq
    from kale_ext.channel import ChannelClient
    mode, address, key, count, trial = sys.argv[1:4] + [int(a) for a in sys.argv[4:6]]
    def values(i):
        return {"epoch": i, "loss": 1.0 / (i + 1), "val_loss": 1.1 / (i + 1),
                "acc": 0.5, "val_acc": 0.45}
    if mode == "raw":
        sock = zmq.Context().socket(zmq.PUSH)
        sock.connect(address)
        time.sleep(0.2)  # let the connection settle before the first message
        for i in range(count):
            sock.send(json.dumps([i, "report", time.time(), values(i)]).encode())
        sock.close(linger=-1)
        print(0.0)
    else:
        client = ChannelClient(address, bytes.fromhex(key), trial=trial)
        client.send("start", {})
        block = mode == "block"
        start = time.perf_counter()
        for i in range(count):
            client.send("report", values(i), block=block)
        client.flush(timeout=300)
        print(time.perf_counter() - start)
        client.close()
""")


def run_sender(mode: str, address: str, key: bytes, count: int, trial: int) -> float:
    out = subprocess.run([sys.executable, "-c", SENDER, mode, address, key.hex(), str(count),
                          str(trial)],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return float(out.strip().splitlines()[-1])


def raw_push_pull(count: int) -> float:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-c", SENDER, "raw", f"tcp://127.0.0.1:{port}",
                             "", str(count), "0"], stdout=subprocess.DEVNULL)
    json.loads(pull.recv())
    start = time.perf_counter()
    for _ in range(count - 1):
        json.loads(pull.recv())
    elapsed = time.perf_counter() - start
    proc.wait(60)
    pull.close()
    context.term()
    return elapsed


def channel(count: int, mode: str, store: Store | None, trial: int = 0) -> float:
    key = new_key()
    delivered: list[int] = [0]

    def handler(batch: list[Message]) -> None:
        if store is not None:
            store.append(batch)
        delivered[0] += sum(m.kind == "report" for m in batch)

    with ChannelServer(key, handler, host="127.0.0.1") as server:
        elapsed = run_sender(mode, server.address, key, count, trial)
    assert delivered[0] == count  # every report reached the handler exactly once
    return elapsed


@pytest.mark.benchmark
@pytest.mark.bench_ci
def test_channel_throughput(tmp_path):
    results = {"raw PUSH/PULL (no acks, no store)": (BATCHED, raw_push_pull(BATCHED)),
               "channel, no store, block=False": (BATCHED, channel(BATCHED, "queue", None)),
               "channel, no store, block=True": (BLOCKING, channel(BLOCKING, "block", None))}
    with Store.open(tmp_path / "bench.kale.sqlite") as store:
        store.create_search({"metric": "val_acc", "mode": "max"})
        store.add_trial(0, {})
        store.add_trial(1, {})
        results["channel + SQLite, block=False"] = (BATCHED, channel(BATCHED, "queue", store))
        results["channel + SQLite, block=True"] = (BLOCKING,
                                                   channel(BLOCKING, "block", store, trial=1))
        assert len(store.metrics()) == BATCHED + BLOCKING
    baseline = BATCHED / results["raw PUSH/PULL (no acks, no store)"][1]
    print(f"\n{'path':38} {'reports':>8} {'reports/s':>11} {'vs raw':>7}")
    for name, (count, elapsed) in results.items():
        rate = count / elapsed
        print(f"{name:38} {count:8d} {rate:11,.0f} {rate / baseline:7.2f}")
    targets = Targets()
    stored = results["channel + SQLite, block=False"]
    targets.ratio("batched reports stored in SQLite, channel/raw zmq", stored[0] / stored[1],
                  baseline, at_least=0.25)
    targets.assert_met()
