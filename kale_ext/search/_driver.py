"""The search driver.

The driver owns a search's trials and runs one background thread in the kernel that
keeps every worker busy.

It asks the sampler for configs, submits trials to the cluster, receives their
reports through the metric channel (on the channel's thread), asks the scheduler
what each trial should do, writes everything to the store, and watches heartbeats
and futures to detect lost workers. :class:`kale_ext.Search` is its front: its
controls call :meth:`Driver.stop`, :meth:`Driver.pause`, :meth:`Driver.resume` and
:meth:`Driver.restart`. All mutable state is guarded by one lock.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kale_ext._errors import SearchError, StoreError
from kale_ext.channel import ChannelInfo, ChannelServer, new_key
from kale_ext.clusters import WorkerRetired
from kale_ext.search._control import apply as apply_control
from kale_ext.search._control import channel_file
from kale_ext.search._controls import DriverControls
from kale_ext.search._events import SearchEvents
from kale_ext.search._liveness import Liveness
from kale_ext.search._migration import Migrations, retired_reason
from kale_ext.search._runs import TrialRun, TrialRuns
from kale_ext.search._timeouts import Timeouts
from kale_ext.trial import CONTINUE, Ingest, TrialContext, TrialState, run_trial

if TYPE_CHECKING:
    from kale_ext.clusters import Cluster
    from kale_ext.search._samplers import Sampler
    from kale_ext.search._space import Space
    from kale_ext.search.schedulers import Scheduler
    from kale_ext.store import Store

logger = logging.getLogger(__name__)

_TICK = 0.25  # seconds between housekeeping passes of the loop
_WORKERS_EVERY = 2.0  # seconds between counts of the cluster's workers


class SearchSpec(Protocol):
    """What the driver reads of the search it runs: its settings (a :class:`kale_ext.Search`)."""

    name: str
    fn_pickle: bytes
    space: Space
    metric: str
    mode: str
    n_trials: int
    max_concurrent: int | None
    prefetch: int
    retries: int
    workers_per_trial: int
    engine: str
    heartbeat_timeout: float
    report_timeout: float
    checkpoint_dir: Path
    channel_host: str | None

    @property
    def cluster(self) -> Cluster: ...


class Driver(DriverControls):
    """Owns a search's trials and runs them on its cluster.

    Parameters
    ----------
    spec
        The search's settings.
    store, sampler, scheduler
        Where everything is recorded, who suggests configs, who decides early stopping.
    """

    def __init__(self, spec: SearchSpec, store: Store, sampler: Sampler,
                 scheduler: Scheduler) -> None:
        self.spec = spec
        self.store = store
        scheduler.setup(spec.metric, spec.mode)
        self.trials = TrialRuns(spec.name, store, sampler, scheduler, spec.space, spec.metric)
        self.lock = threading.RLock()
        self.events: queue.Queue[Callable[[], None]] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.paused = False
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.server: ChannelServer | None = None
        self.channel: dict[str, Any] = {}
        self.trial_events: SearchEvents | None = None
        self.timeouts = Timeouts.of(spec, self._wake)
        self.liveness = Liveness(spec.heartbeat_timeout, _TICK)
        self.migrations = Migrations()  # trials leave workers about to retire
        self._workers = 1
        self._workers_read = -_WORKERS_EVERY

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def runs(self) -> dict[int, TrialRun]:
        """The trials by number (read them; change them through the driver's methods)."""
        return self.trials.runs

    @property
    def running(self) -> bool:
        """Whether the driver's thread is started and not done."""
        return self.thread is not None and not self.done.is_set()

    def restore(self) -> None:
        """Take up the trials recorded in the store (a search resumed after a crash)."""
        with self.lock:
            self.trials.restore()

    def new_trial(self) -> TrialRun:
        """Add a trial with the sampler's next config."""
        with self.lock:
            return self.trials.new()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the metric channel and start the driver's thread; returns at once."""
        if self.running:
            raise SearchError(f"Search {self.name!r} is already running.")
        self.stopping = self.paused = False
        self.error = None
        self.done.clear()
        key = new_key()
        events = SearchEvents(self.trials, lambda data: apply_control(self, data),
                              self._store_failed)
        self.trial_events = events
        self.server = ChannelServer(key, Ingest(self.store, events, lock=self.lock),
                                    host=self.spec.channel_host)
        self.server.start()
        info = ChannelInfo.create(self.server.address, key)
        info.save(channel_file(self.name))  # 0600: lets the owner's other processes steer
        self.channel = info.to_dict()
        self.store.set_search_state("running")
        self.thread = threading.Thread(target=self._loop, name=f"kale-search-{self.name}",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                # Wait for an event (a trial's future settling) or a tick, run every
                # queued event, then look after the trials at once.
                with contextlib.suppress(queue.Empty):
                    self.events.get(timeout=_TICK)()
                    while True:
                        self.events.get_nowait()()
                with self.lock, self.store.batch():  # a pass's writes: one transaction
                    self._reap()
                    self.migrations.check(self.spec.cluster,
                                          self.trials.in_state(TrialState.RUNNING), self)
                    self._watch_heartbeats()
                    self._fill()
                    if self._finished():
                        break
        except BaseException as e:  # surfaced by Search.wait()
            logger.exception("search driver failed")
            self.error = e
        finally:
            self._shutdown()

    def _store_failed(self, error: StoreError) -> None:
        """End the search: its store cannot be written (called on the channel's thread)."""
        def fail() -> None:
            raise error

        self.events.put(fail)

    def _shutdown(self) -> None:
        try:
            with self.lock:
                for run in self.runs.values():
                    if run.future is not None and not run.future.done():
                        with contextlib.suppress(Exception):  # a closed client cannot cancel
                            run.future.cancel()
                try:
                    for run in self.runs.values():
                        if run.state in (TrialState.RUNNING, TrialState.PENDING) \
                                and self.stopping:
                            self.trials.transition(run, TrialState.STOPPED, "search stopped")
                    final = "failed" if self.error else \
                        ("stopped" if self.stopping else "completed")
                    self.store.set_search_state(final, f"{type(self.error).__name__}: "
                                                f"{self.error}" if self.error else None)
                except StoreError as e:  # a full or read-only disk: the log must say it
                    logger.error("Search %r ended and its store could not record it: %s",
                                 self.name, e)
                    if self.error is None:
                        self.error = e
        finally:
            try:
                if self.server is not None:
                    self.server.close()
            finally:
                channel_file(self.name).unlink(missing_ok=True)
                self.done.set()

    def _wake(self, _: Any = None) -> None:
        self.events.put(lambda: None)

    def _server(self) -> ChannelServer:
        if self.server is None:
            raise SearchError(f"Search {self.name!r} is not started; call search.start().")
        return self.server

    # -- scheduling ------------------------------------------------------------------

    def _capacity(self) -> int:
        if self.spec.max_concurrent:
            return int(self.spec.max_concurrent)
        now = time.monotonic()
        if now - self._workers_read > _WORKERS_EVERY:  # follows scaling, without a query a tick
            self._workers_read = now
            try:
                self._workers = self.spec.cluster.n_workers()
            except Exception as e:
                logger.warning("could not count the cluster's workers: %s", e)
        workers = self._workers - self.migrations.leaving()  # drained: they take no trials
        return max(1, workers // self.spec.workers_per_trial)

    def _fill(self) -> None:
        if self.stopping or self.paused:
            return
        # Prefetched trials wait in the cluster's queue for the next free worker.
        free = self._capacity() + self.spec.prefetch - \
            len(self.trials.in_state(TrialState.RUNNING))
        batch = []
        for run in self.trials.in_state(TrialState.PENDING):
            if free <= 0:
                break
            if run.future is None:
                batch.append(run)
                free -= 1
        while free > 0 and self._can_ask():
            batch.append(self.trials.new())
            free -= 1
        if batch:
            self._submit(batch)

    def _can_ask(self) -> bool:
        if len(self.runs) >= self.spec.n_trials:
            return False
        remaining = self.trials.sampler.remaining()
        return remaining is None or remaining > 0

    def _submit(self, runs: list[TrialRun]) -> None:
        """Submit a new attempt of each of ``runs``: one-worker trials in one batch."""
        spec = self.spec
        contexts = [self._attempt(run) for run in runs]
        if spec.workers_per_trial > 1:  # a distributed trial: one rank per worker
            from kale_ext.training import launch_trial

            futures = [launch_trial(spec.cluster, spec.fn_pickle, ctx, self.channel,
                                    workers=spec.workers_per_trial, engine=spec.engine,
                                    server=self._server(),
                                    heartbeat_timeout=spec.heartbeat_timeout)
                       for ctx in contexts]
        else:
            futures = spec.cluster.submit_many(run_trial, [(spec.fn_pickle, ctx, self.channel)
                                                           for ctx in contexts])
        for run, future in zip(runs, futures, strict=True):
            run.future = future
            future.add_done_callback(self._wake)  # reaped and refilled without a tick's wait
            self.trials.transition(run, TrialState.RUNNING,
                                   f"attempt {run.attempt} submitted", attempt=run.attempt)

    def _attempt(self, run: TrialRun) -> TrialContext:
        """Start a new attempt of ``run``: its context, its decision, its bookkeeping."""
        spec, server = self.spec, self._server()
        self._failure(run)  # a new attempt starts clean
        run.attempt += 1
        server.set_decision(run.number, CONTINUE.to_dict())  # replies stick until replaced
        # Each attempt writes its own folder (a superseded one may still be writing);
        # it starts from the latest checkpoint of the earlier ones.
        folder = spec.checkpoint_dir / f"trial-{run.number}" / f"attempt-{run.attempt}"
        ctx = TrialContext(
            trial=run.number, attempt=run.attempt, rank=0, config=run.config,
            checkpoint_dir=str(folder), restore_from=run.checkpoint,
            report_timeout=spec.report_timeout,
        )
        run.submitted = time.time()
        run.started = None
        run.last_seen = run.submitted
        run.pending_action = None
        run.by_scheduler = False
        run.requeue = False
        return ctx

    def _finished(self) -> bool:
        if self.trials.in_state(TrialState.RUNNING):
            return False
        if self.stopping:
            return True
        if self.paused:
            return False
        if self.trials.in_state(TrialState.PENDING, TrialState.PAUSED):
            return False  # a paused trial waits for resume() or stop()
        return not self._can_ask()

    # -- outcomes --------------------------------------------------------------------

    def _reap(self) -> None:
        events, timeouts = self.trial_events, self.timeouts
        if events is not None:  # time out, hard-stop; settle what could not be
            for run in timeouts.check(self.runs, events, self._server()):
                timeouts.settle(run, self.trials, events, "")
        for run in self.runs.values():
            fut = run.future
            if run.state is not TrialState.RUNNING or fut is None:
                continue
            # A trial that returned is settled by its end message; its result may be late.
            ended = self.liveness.ended(run, self._server(), self.spec.workers_per_trial)
            if ended is None and not fut.done():
                continue
            run.future = None
            try:
                outcome = ended if ended is not None else fut.result()
            except WorkerRetired as e:  # planned, near the job's walltime: a migration
                self.trials.transition(run, TrialState.PENDING, retired_reason(run, e))
                continue
            except BaseException as e:  # the worker, engine or job died under the trial
                if events is None or not timeouts.killed(run, self.trials, events):
                    self._lost(run, f"worker lost: {type(e).__name__}: {e}")
                continue
            if events is not None and timeouts.settled_as_told(run, self.trials, events):
                continue
            failure = self._failure(run, ended=True)
            if failure is not None:  # a report the driver could not use
                self.trials.transition(run, TrialState.FAILED, failure, error=failure)
                self.trials.tell(run)
            else:
                self.trials.end(run, outcome)

    def _failure(self, run: TrialRun, *, ended: bool = False) -> str | None:
        events = self.trial_events
        return events.take_failure(run, ended=ended) if events is not None else None

    def _lost(self, run: TrialRun, reason: str) -> None:
        future = run.future
        if future is not None:
            alive = not future.done()
            future.cancel()
            run.future = None
            if alive and self.server is not None:  # it may still run: it must stop
                self.timeouts.supersede(run, future, self.server)
        self.timeouts.forget((run.number, run.attempt))
        retries = self.spec.retries
        failure = self._failure(run)
        if failure is not None:
            reason = failure
        if run.retries < retries and not self.stopping and failure is None:
            run.retries += 1
            self.trials.transition(run, TrialState.FAILED, reason, retries=run.retries)
            self.trials.transition(run, TrialState.PENDING,
                                   f"retry {run.retries} of {retries} after: {reason}")
        else:
            self.trials.transition(run, TrialState.FAILED, reason)
            self.trials.tell(run)

    def _watch_heartbeats(self) -> None:
        # Silence is judged against the driver's own lag (see _liveness), and recorded.
        for run, reason in self.liveness.lost(self.runs.values(), self._server()):
            self._lost(run, reason)
        self.liveness.record(self.store)
