"""The search driver: one background thread in the kernel that keeps every worker busy.

It asks the sampler for configs, submits trials to the cluster, receives their
reports through the metric channel (on the channel's thread), asks the scheduler
what each trial should do, writes everything to the store, and watches heartbeats
and futures to detect lost workers. All mutable state is guarded by one lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kale_ext.channel import Message
from kale_ext.search._control import apply as apply_control
from kale_ext.search._control import channel_file
from kale_ext.trial import (
    CONTINUE,
    Action,
    Decision,
    Ingest,
    TrialContext,
    TrialEvents,
    TrialState,
    run_trial,
)

logger = logging.getLogger(__name__)

_TICK = 0.25  # seconds between housekeeping passes of the loop
_WORKERS_EVERY = 2.0  # seconds between counts of the cluster's workers


@dataclass
class TrialRun:
    """The driver's live view of one trial."""

    number: int
    config: dict[str, Any]
    token: int | None = None  # the sampler's number for it, until told how it ended
    state: TrialState = TrialState.PENDING
    attempt: int = -1  # the current attempt; -1 before the first submission
    retries: int = 0
    future: Future[Any] | None = None
    submitted: float = 0.0
    started: float | None = None
    last_seen: float = 0.0
    last_step: int = -1
    checkpoint: str | None = None
    pending_action: Decision | None = None  # what the driver told it, applied when it ends
    by_scheduler: bool = False  # the pending action came from the scheduler, not the user
    requeue: bool = False  # restart or resume: submit again once the current attempt ends
    worker: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


class Driver(TrialEvents):
    """Runs a search's trials on a cluster; owned by :class:`kale_ext.Search`."""

    def __init__(self, search: Any) -> None:
        self.s = search
        self.lock = threading.RLock()
        self.events: queue.Queue[Callable[[], None]] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.paused = False
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.server: Any = None
        self._workers = 1
        self._workers_read = -_WORKERS_EVERY

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        from kale_ext.channel import ChannelInfo, ChannelServer, new_key

        key = new_key()
        ingest = Ingest(self.s.store, self, lock=self.lock)
        self.server = ChannelServer(key, ingest, host=self.s.channel_host)
        self.server.start()
        info = ChannelInfo.create(self.server.address, key)
        info.save(channel_file(self.s.name))  # 0600: lets the owner's other processes steer
        self.channel = info.to_dict()
        self.thread = threading.Thread(target=self._loop, name=f"kale-search-{self.s.name}",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                # Wait for an event (a control action, a trial's future settling) or a
                # tick, run every queued event, then look after the trials at once.
                with contextlib.suppress(queue.Empty):
                    self.events.get(timeout=_TICK)()
                    while True:
                        self.events.get_nowait()()
                with self.lock:
                    self._reap()
                    self._watch_heartbeats()
                    self._fill()
                    if self._finished():
                        break
        except BaseException as e:  # surfaced by Search.wait()
            logger.exception("search driver failed")
            self.error = e
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            with self.lock:
                for run in self.s.runs.values():
                    if run.future is not None and not run.future.done():
                        with contextlib.suppress(Exception):  # a closed client cannot cancel
                            run.future.cancel()
                    if run.state in (TrialState.RUNNING, TrialState.PENDING) and self.stopping:
                        self._transition(run, TrialState.STOPPED, "search stopped")
                final = "failed" if self.error else ("stopped" if self.stopping else "completed")
                self.s.store.set_search_state(final)
            if self.server is not None:
                self.server.close()
            channel_file(self.s.name).unlink(missing_ok=True)
        finally:
            self.done.set()

    def _wake(self, _: Any = None) -> None:
        self.events.put(lambda: None)

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the driver thread (control actions from the kernel)."""
        self.events.put(fn)

    # -- scheduling ------------------------------------------------------------------

    def _capacity(self) -> int:
        if self.s.max_concurrent:
            return int(self.s.max_concurrent)
        now = time.monotonic()
        if now - self._workers_read > _WORKERS_EVERY:  # follows scaling, without a query a tick
            self._workers_read = now
            try:
                self._workers = self.s.cluster.n_workers()
            except Exception as e:
                logger.warning("could not count the cluster's workers: %s", e)
        return max(1, self._workers // self.s.workers_per_trial)

    def _fill(self) -> None:
        if self.stopping or self.paused:
            return
        running = sum(1 for r in self.s.runs.values() if r.state is TrialState.RUNNING)
        free = self._capacity() - running
        for run in sorted(self.s.runs.values(), key=lambda r: r.number):
            if free <= 0:
                return
            if run.state is TrialState.PENDING and run.future is None:
                self._submit(run)
                free -= 1
        while free > 0 and self._can_ask():
            run = self.s._new_trial()
            self._submit(run)
            free -= 1

    def _can_ask(self) -> bool:
        if len(self.s.runs) >= self.s.n_trials:
            return False
        remaining = self.s.sampler.remaining()
        return remaining is None or remaining > 0

    def _submit(self, run: TrialRun) -> None:
        run.attempt += 1
        self.server.set_decision(run.number, CONTINUE.to_dict())  # replies stick until replaced
        ctx = TrialContext(
            trial=run.number, attempt=run.attempt, rank=0, config=run.config,
            checkpoint_dir=str(self.s.checkpoint_dir / f"trial-{run.number}"),
            restore_from=run.checkpoint, report_timeout=self.s.report_timeout,
        )
        run.submitted = time.time()
        run.started = None
        run.last_seen = run.submitted
        run.pending_action = None
        run.by_scheduler = False
        run.requeue = False
        if self.s.workers_per_trial > 1:  # a distributed trial: one rank per worker
            from kale_ext.training import launch_trial

            run.future = launch_trial(self.s.cluster, self.s.fn_pickle, ctx, self.channel,
                                      workers=self.s.workers_per_trial, engine=self.s.engine,
                                      server=self.server,
                                      heartbeat_timeout=self.s.heartbeat_timeout)
        else:
            run.future = self.s.cluster.submit(run_trial, self.s.fn_pickle, ctx, self.channel)
        run.future.add_done_callback(self._wake)  # reaped and refilled without a tick's wait
        self._transition(run, TrialState.RUNNING, f"attempt {run.attempt} submitted",
                         attempt=run.attempt)

    def _finished(self) -> bool:
        if any(r.state is TrialState.RUNNING for r in self.s.runs.values()):
            return False
        if self.stopping:
            return True
        if self.paused:
            return False
        if any(r.state in (TrialState.PENDING, TrialState.PAUSED) for r in self.s.runs.values()):
            return False  # a paused trial waits for resume() or stop()
        return not self._can_ask()

    # -- outcomes --------------------------------------------------------------------

    def _reap(self) -> None:
        for run in self.s.runs.values():
            fut = run.future
            if run.state is not TrialState.RUNNING or fut is None or not fut.done():
                continue
            run.future = None
            try:
                outcome = fut.result()
            except BaseException as e:  # the worker, engine or job died under the trial
                self._lost(run, f"worker lost: {type(e).__name__}: {e}")
                continue
            self._ended(run, outcome)

    def _ended(self, run: TrialRun, outcome: Mapping[str, Any]) -> None:
        status = outcome.get("status")
        if status == "ok":
            self._transition(run, TrialState.COMPLETED, "returned")
        elif status == "error":
            self._transition(run, TrialState.FAILED, outcome.get("error", "error"),
                             error=outcome.get("traceback", ""))
        else:
            action = Action(outcome.get("action", "stop"))
            reason = outcome.get("reason", action.value)
            decided = run.pending_action
            if decided is not None and decided.action is Action.EXPLOIT:
                self._exploit(run, decided)
            elif run.requeue:
                self._transition(run, TrialState.PENDING, reason)
            elif action is Action.PAUSE:
                self._transition(run, TrialState.PAUSED, reason)
            elif action is Action.PRUNE:
                self._transition(run, TrialState.PRUNED, reason)
            elif run.by_scheduler:  # the scheduler's budget was reached (e.g. ASHA's max_t)
                self._transition(run, TrialState.COMPLETED, reason)
            else:
                self._transition(run, TrialState.STOPPED, reason)
        self._tell(run)

    def _lost(self, run: TrialRun, reason: str) -> None:
        if run.future is not None:
            run.future.cancel()
            run.future = None
        if run.retries < self.s.retries and not self.stopping:
            run.retries += 1
            self._transition(run, TrialState.FAILED, reason, retries=run.retries)
            self._transition(run, TrialState.PENDING,
                             f"retry {run.retries} of {self.s.retries} after: {reason}")
        else:
            self._transition(run, TrialState.FAILED, reason)
            self._tell(run)

    def _watch_heartbeats(self) -> None:
        now = time.time()
        timeout = self.s.heartbeat_timeout
        seen = self.server.last_seen()
        for run in self.s.runs.values():
            server_seen = seen.get((run.number, run.attempt, 0))
            if server_seen is not None:
                run.last_seen = max(run.last_seen, server_seen)
            if run.state is TrialState.RUNNING and run.started is not None \
                    and now - run.last_seen > timeout:
                self._lost(run, f"no heartbeat for {now - run.last_seen:.0f} s "
                                f"(limit {timeout:g} s) from {run.worker or 'its worker'}")

    def _exploit(self, run: TrialRun, decision: Decision) -> None:
        source = self.s.runs.get(decision.source_trial) if decision.source_trial is not None \
            else None
        run.config = self.s.space.validate_config({**run.config, **decision.params}) \
            if decision.params else run.config
        run.checkpoint = source.checkpoint if source else run.checkpoint
        self.s.store.transition(run.number, TrialState.PENDING, decision.reason,
                                params=run.config)
        run.state = TrialState.PENDING

    def _tell(self, run: TrialRun) -> None:
        if not run.state.is_finished():
            return
        self.s.scheduler.on_trial_end(run.number, run.state)
        value = run.metrics.get(self.s.metric)
        value = float(value) if isinstance(value, int | float) else None
        step = run.last_step if run.last_step >= 0 else None
        if run.token is not None:
            self.s.sampler.tell(run.token, value, run.state, step=step)
            run.token = None
        else:  # a restarted or resumed trial: the sampler learns it as a new observation
            self.s.sampler.add(run.config, value, run.state, step=step)

    def _transition(self, run: TrialRun, to: TrialState, reason: str, **fields: Any) -> None:
        run.state = to
        self.s.store.transition(run.number, to, reason, **fields)

    # -- the channel's side (runs on the channel server's thread, under the lock) ------

    def attempt(self, trial: int) -> int | None:
        run = self.s.runs.get(trial)
        return run.attempt if run is not None else None

    def on_seen(self, message: Message) -> None:
        self.s.runs[message.trial].last_seen = time.time()

    def on_start(self, message: Message) -> None:
        run = self.s.runs[message.trial]
        run.started = run.last_seen
        run.worker = message.data.get("worker") or message.data.get("host")
        self.s.store.transition(run.number, TrialState.RUNNING, f"started on {run.worker}",
                                worker=run.worker)

    def on_checkpoint(self, trial: int, step: int | None, path: str) -> None:
        self.s.runs[trial].checkpoint = path

    def on_report(self, message: Message) -> Decision | None:
        if message.rank != 0:
            return None
        return self._on_report(self.s.runs[message.trial], message.data)

    def pending(self) -> Mapping[int, Decision]:
        return {run.number: run.pending_action for run in self.s.runs.values()
                if run.pending_action is not None and run.state is TrialState.RUNNING}

    def on_control(self, data: dict[str, Any]) -> Decision:
        try:
            answer = {"ok": True, "message": apply_control(self.s, data)}
        except Exception as e:  # the caller reads why; the search goes on
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return Decision(Action.CONTINUE, json.dumps(answer))

    def _on_report(self, run: TrialRun, data: Mapping[str, Any]) -> Decision | None:
        run.metrics.update(data)
        step = data.get("epoch", data.get("step"))
        value = data.get(self.s.metric)
        if step is None or not isinstance(value, int | float):
            return None
        run.last_step = int(step)
        if run.pending_action is not None:
            return run.pending_action
        decision: Decision = self.s.scheduler.on_report(run.number, int(step), float(value))
        if decision.action is Action.CONTINUE:
            return None
        run.pending_action = decision
        run.by_scheduler = True
        return decision

    # -- control from the kernel -----------------------------------------------------

    def tell_trial(self, run: TrialRun, decision: Decision, *, requeue: bool = False) -> None:
        """Ask a running trial to end with ``decision`` at its next report or heartbeat."""
        run.pending_action = decision
        run.by_scheduler = False
        run.requeue = requeue
        self.server.set_decision(run.number, decision.to_dict())
