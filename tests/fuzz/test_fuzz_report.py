"""Generated ``report()`` payloads against a real driver end: channel server, ingest, store.

The driver end is what a search runs (:class:`kale_ext.channel.ChannelServer` with
:class:`kale_ext.trial.Ingest` over a SQLite store and the search's own trial events);
only the cluster is left out, since a report never touches it. Two properties of at
least 1,000 cases each:

- ``kale.report(**payload)`` with values of every type (NaN, infinities, huge ints,
  text, containers, objects) and steps of every kind: it returns once the row is stored
  exactly as given, or raises the project's error naming the metric and the rule;
- raw payloads a client of another version could send (non-string and colliding keys,
  nested and huge dicts, bad steps): the driver stores them or the client refuses them
  with an error naming the field and the rule, the driver never stops answering, and a
  bad step fails only its own trial, naming the value and the rule.

After every case the rows stored before it are unchanged. Each case runs under an alarm
(a hang fails it, nothing is timed), and each test prints how many cases it ran.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kale_ext as kale
from kale_ext._errors import ChannelError, KaleError, TrialStopped
from kale_ext.channel import ChannelClient, ChannelServer, new_key
from kale_ext.search import FIFO, Space, make_sampler
from kale_ext.search._events import SearchEvents
from kale_ext.search._runs import TrialRun, TrialRuns
from kale_ext.trial import Ingest, TrialContext, TrialState, open_store, using

CASES = 1000
FUZZ = settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
HANG = 20  # seconds: a case still running after this is hung, not slow
METRIC = "loss"


@contextlib.contextmanager
def bounded(seconds: int = HANG) -> Iterator[None]:
    """Fail a case that runs longer than ``seconds`` (a hang), without timing it."""
    def hung(*_: Any) -> None:
        raise AssertionError(f"a case ran past {seconds} s: hung")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class Driver:
    """The driver's end of a search, without a cluster: server, ingest, store, events."""

    def __init__(self, path: Path) -> None:
        self.store = open_store(path)
        self.store.create_search({"name": "fuzz", "metric": METRIC, "mode": "min"})
        space = Space({"x": kale.uniform(0, 1)})
        self.trials = TrialRuns("fuzz", self.store, make_sampler("random", space, mode="min"),
                                FIFO(), space, METRIC)
        self.trials.scheduler.setup(METRIC, "min")
        self.events = SearchEvents(self.trials, lambda data: "ok")
        self.key = new_key()
        self.server = ChannelServer(self.key, Ingest(self.store, self.events),
                                    host="127.0.0.1")
        self.server.start()
        self.snapshot: dict[int, tuple[Any, ...]] = {}  # rowid -> the stored row
        self.checks = 0

    def add_trial(self, number: int) -> None:
        self.trials.runs[number] = TrialRun(number, {}, state=TrialState.RUNNING, attempt=0)
        self.store.add_trial(number, {})

    def client(self, trial: int) -> ChannelClient:
        return ChannelClient(self.server.address, self.key, trial, resend_after=1.0)

    def check_unchanged(self, full: bool = False) -> list[Any]:
        """Return the rows stored since the last call.

        Every call checks that the rows known before are all still there (their count and
        the last one); every 50th call, or with ``full``, compares each of them too.
        """
        self.checks += 1
        full = full or self.checks % 50 == 0
        last = max(self.snapshot, default=0)
        rows = self.store.metrics(since_rowid=0 if full else max(0, last - 1))
        seen = {m.rowid: (m.trial, m.attempt, m.seq, m.step, json.dumps(m.values))
                for m in rows}
        for rowid in (self.snapshot if full else [last] if last else []):
            assert seen.get(rowid) == self.snapshot[rowid], f"stored row {rowid} changed or lost"
        new = [m for m in rows if m.rowid not in self.snapshot]
        self.snapshot.update((m.rowid, seen[m.rowid]) for m in new)
        count = self.store._read("SELECT count(*) FROM metrics")[0][0]
        assert count == len(self.snapshot), "a stored row was lost"
        return new

    def close(self) -> None:
        self.server.close()
        self.store.close()


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Iterator[Driver]:
    d = Driver(tmp_path_factory.mktemp("fuzz-report") / "s.kale.sqlite")
    yield d
    d.close()


def _count(counts: Counter[str], name: str) -> None:
    total = sum(counts.values())
    print(f"\nfuzz {name}: {total} cases, " + ", ".join(f"{k} {v}" for k, v in
                                                     sorted(counts.items())))
    assert total >= CASES


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


NAMES = st.one_of(st.sampled_from(["loss", "acc", "epoch", "step", "val_loss", "x" * 200]),
                  st.text(min_size=1, max_size=8))
STEPS = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from(["ten", "3", "", True, None, float("nan"), 2**63, -(2**63),
                                   2**63 - 1]))
VALUES = st.one_of(st.integers(-(2**80), 2**80), st.floats(allow_nan=True), st.text(max_size=20),
                   st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
                   st.builds(Opaque), st.binary(max_size=4))
PAYLOADS = st.dictionaries(NAMES, VALUES, max_size=6).flatmap(
    lambda d: st.one_of(st.just(d), STEPS.map(lambda s: {**d, "epoch": s}),
                        STEPS.map(lambda s: {**d, "step": s})))


def test_report_payloads_are_stored_exactly_or_refused_by_name_and_rule(driver):
    counts: Counter[str] = Counter()
    driver.add_trial(0)
    client = driver.client(0)
    ctx = TrialContext(trial=0, attempt=0, rank=0, config={}, checkpoint_dir="/nonexistent",
                       client=client, report_timeout=HANG)
    with using(ctx):
        kale.report(epoch=0, loss=1.0)  # the first report names the search's metric
        driver.check_unchanged()

        @FUZZ
        @given(payload=PAYLOADS)
        def case(payload: dict[str, Any]) -> None:
            with bounded():
                try:
                    kale.report(**payload)
                except TrialStopped as e:  # the driver must never end this trial
                    raise AssertionError(f"the driver stopped the trial: {e}") from e
                except KaleError as e:
                    text = str(e)
                    assert any(repr(name) in text for name in payload), (payload, text)
                    assert "must" in text, text
                    assert driver.check_unchanged() == [], "a refused report left a row"
                    counts["refused"] += 1
                    return
                new = driver.check_unchanged()
                assert len(new) == 1, (payload, new)
                stored = new[0].values
                for name, value in payload.items():
                    assert _same(stored[name], value), (name, value, stored[name])
                counts["stored"] += 1

        case()
    client.close()
    driver.check_unchanged(full=True)
    assert driver.events.failures == {}
    _count(counts, "report() payloads")


class Key:
    """A non-string key, as a dict built by code rather than by keywords has."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __str__(self) -> str:
        return f"k{self.n}"


RAW_KEYS = st.one_of(NAMES, st.integers(-5, 5), st.floats(allow_nan=False, width=16),
                     st.booleans(), st.none(), st.integers(0, 3).map(Key))
NESTED = st.recursive(
    st.integers() | st.floats(allow_nan=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(RAW_KEYS, inner, max_size=3),
    max_leaves=8)
# One case in 20 is a huge dict: big, at the limit of a message, or over it.
HUGE = st.sampled_from([2_000, 50_000, 400_000]).map(lambda n: {f"m{i}": i for i in range(n)})
RAW = st.integers(0, 19).flatmap(
    lambda i: HUGE if i == 0 else st.dictionaries(RAW_KEYS, st.one_of(VALUES, NESTED),
                                                  max_size=6)
).flatmap(lambda d: st.one_of(st.just(d), STEPS.map(lambda s: {**d, "epoch": s}),
                              STEPS.map(lambda s: {**d, "step": s})))


def test_raw_report_payloads_never_break_the_driver(driver):
    counts: Counter[str] = Counter()
    numbers = iter(range(1000, 10**6))

    @FUZZ
    @given(payload=RAW)
    def case(payload: dict[Any, Any]) -> None:
        trial = next(numbers)
        driver.add_trial(trial)
        with bounded(), driver.client(trial) as client:
            try:
                client.send("report", {METRIC: 0.5, **payload}, timeout=HANG)
            except ChannelError as e:
                text = str(e)
                assert "must" in text or "at most" in text, text
                assert driver.check_unchanged() == [], "a refused report left a row"
                counts["refused by the client"] += 1
                return
            client.send("report", {"epoch": 10**6, METRIC: 0.1}, timeout=HANG)  # still served
        new = driver.check_unchanged()
        assert [m.trial for m in new] == [trial, trial], new
        failure = driver.events.failures.get(trial)
        if failure is not None:
            assert ("'epoch'" in failure or "'step'" in failure) \
                and "finite whole number" in failure, failure
            counts["bad step: trial failed"] += 1
        else:
            counts["stored"] += 1

    case()
    driver.check_unchanged(full=True)
    _count(counts, "raw report payloads")
