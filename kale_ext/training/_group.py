"""The kernel's side of a distributed launch: place, probe, start and watch the ranks.

:func:`launch` holds distinct workers, probes them, numbers the ranks, sets up the
rendezvous of the engine and submits one :func:`~._rank.run_rank` task per worker. The
returned :class:`RankGroup` watches the ranks from one thread: when a rank fails (an
exception, a killed process, a lost worker or a silent heartbeat) it aborts the others
through the metric channel, gives them ``grace`` seconds, cancels what is left and
settles its future with the failing rank's error and traceback.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from typing import Any

from kale_ext import config as kale_config
from kale_ext._errors import ClusterError, ConfigError
from kale_ext.clusters import Slot
from kale_ext.training import _placement, _rendezvous, _timings
from kale_ext.training._rank import RankTask, run_rank
from kale_ext.trial import plain_value

logger = logging.getLogger(__name__)

ENGINES = ("torch", "horovod")
_POLL = 0.1


@dataclass
class LaunchOptions:
    """How to launch: ranks, engine, process-group backend and the failure timings.

    ``timeout`` is the torch process group's collective timeout; ``grace`` how long the
    other ranks get to end after an abort before their tasks are cancelled;
    ``heartbeat_timeout`` how long a started rank may stay silent on the channel;
    ``place_wait`` how long to wait for enough idle workers; ``warm`` forks ranks from
    each worker's zygote (torch imported once per worker, see :mod:`._zygote`) instead
    of starting a new interpreter per rank.
    """

    workers: int
    engine: str = "torch"
    backend: str | None = None
    timeout: float = 300.0
    grace: float = 5.0
    heartbeat_timeout: float = 10.0
    place_wait: float = 10.0
    warm: bool = True

    def check(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, but got "
                              f"engine={self.engine!r}.")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) \
                or self.workers < 1:
            raise ConfigError(f"workers must be an integer >= 1 (one rank per worker), but got "
                              f"workers={self.workers!r}.")
        if not isinstance(self.warm, bool):
            raise ConfigError(f"warm must be True (fork ranks from a process that imported "
                              f"torch once per worker) or False (a new Python per rank), but "
                              f"got warm={self.warm!r}.")
        for name in ("timeout", "grace", "heartbeat_timeout", "place_wait"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, but got "
                                  f"{name}={getattr(self, name)!r}.")
        if self.engine == "horovod":
            from kale_ext.training._horovod import require_horovod

            require_horovod()


def _channel_host(channel: dict[str, Any]) -> str:
    return str(channel["address"]).removeprefix("tcp://").rsplit(":", 1)[0]


def launch(cluster: Any, fn_pickle: bytes, context: Any, channel: dict[str, Any],
           options: LaunchOptions, *, abort: Callable[[str], None],
           liveness: Callable[[], dict[int, float]] | None = None) -> RankGroup:
    """Start ``options.workers`` ranks of ``fn_pickle`` on distinct workers of ``cluster``.

    ``context`` is the TrialContext of the trial (rank 0's numbers are replaced per
    rank); ``abort(reason)`` must make every rank's next acknowledgement carry
    :func:`~._rank.abort_decision`; ``liveness()`` gives the server time each started
    rank was last heard from.
    """
    launched = time.time()
    options.check()
    cluster.disable_task_retries()  # a pinned rank must fail with its worker, not wait
    slots = _placement.reserve(cluster, options.workers, wait=options.place_wait)
    cleanups: list[Callable[[], None]] = [lambda: _placement.release(cluster, slots)]
    try:
        probes = _probe(cluster, slots, _channel_host(channel), hold=options.engine == "torch",
                        warm=options.warm)
        order, infos = _rendezvous.assign([p["hostname"] for p in probes])
        slots = [slots[i] for i in order]
        probes = [probes[i] for i in order]
        envs, backend = _environments(options, probes, infos, channel, cleanups)
        tag = uuid.uuid4().hex[:6]
        futures = []
        for info, slot, env, found in zip(infos, slots, envs, probes, strict=True):
            ctx = replace(context, rank=info.rank, client=None,
                          extra={**context.extra, "world_size": info.size,
                                 "local_rank": info.local_rank})
            task = RankTask(fn_pickle, ctx, channel, options.engine,
                            {**env, "KALE_WORKER_NAME": slot.name}, backend, options.timeout,
                            warm=options.warm, listen_port=found["port"])
            key = f"kale-rank-{context.trial}.{context.attempt}.{info.rank}-{tag}"
            futures.append(cluster.submit_to(slot, run_rank, task, key=key))
    except BaseException:
        for cleanup in cleanups:
            cleanup()
        raise
    group = RankGroup(futures, slots, infos, options, abort=abort, liveness=liveness,
                      cleanups=cleanups)
    group.marks.update(launched=launched, submitted=time.time())
    return group


def _probe(cluster: Any, slots: list[Slot], host: str, *, hold: bool,
           warm: bool) -> list[dict[str, Any]]:
    futures = [cluster.submit_to(s, _rendezvous.probe, host, hold, warm) for s in slots]
    probes = []
    for slot, fut in zip(slots, futures, strict=True):
        try:
            probes.append(fut.result(timeout=60))
        except Exception as e:
            for f in futures:
                f.cancel()
            raise ClusterError(f"Could not probe worker {slot.name} of cluster {cluster.id} "
                               f"before the launch: {type(e).__name__}: {e}") from e
    return probes


def _environments(options: LaunchOptions, probes: list[dict[str, Any]],
                  infos: list[_rendezvous.RankInfo], channel: dict[str, Any],
                  cleanups: list[Callable[[], None]]) -> tuple[list[dict[str, str]], str]:
    """Each rank's environment variables, and the torch backend."""
    if options.engine == "torch":
        from kale_ext.training._torch import choose_backend

        backend = choose_backend([p["cuda"] for p in probes], options.backend)
        master, port = probes[0]["address"], probes[0]["port"]
        return [_rendezvous.torch_env(i, master, port) for i in infos], backend
    from kale_ext.training._horovod import Rendezvous

    server = Rendezvous(infos)
    cleanups.append(server.stop)
    host = _channel_host(channel)
    cycle = kale_config.get("horovod-cycle-time")
    return [_rendezvous.horovod_env(i, host, server.port, p["interface"],
                                    None if p["cuda"] or cycle is None else float(cycle))
            for i, p in zip(infos, probes, strict=True)], "gloo"


class RankGroup:
    """The ranks of one launch; ``future`` settles with the combined outcome.

    The combined outcome has run_trial's shape (``status`` ok / stopped / error, with
    ``error`` and ``traceback`` naming the failing rank), so a search treats a
    distributed trial like any other, plus ``ranks``: every rank's own outcome.
    """

    def __init__(self, futures: list[Future[Any]], slots: list[Slot],
                 infos: list[_rendezvous.RankInfo], options: LaunchOptions, *,
                 abort: Callable[[str], None],
                 liveness: Callable[[], dict[int, float]] | None,
                 cleanups: list[Callable[[], None]]) -> None:
        self.futures = futures
        self.slots = slots
        self.infos = infos
        self.options = options
        self.future: Future[dict[str, Any]] = _GroupFuture(self)
        self.outcomes: dict[int, dict[str, Any]] = {}
        self.marks: dict[str, float] = {}  # the kernel's: launched, submitted
        self._failures: list[int] = []  # ranks that failed, in the order seen
        self._abort = abort
        self._liveness = liveness
        self._cleanups = cleanups
        self._aborted_at: float | None = None
        self._stop_reason: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="kale-rank-group")
        self._thread.start()

    @property
    def size(self) -> int:
        return len(self.futures)

    def timings(self, created: float) -> dict[str, float]:
        """Return the launch's phases in seconds (:func:`._timings.phases`).

        ``created`` is when the run began, before its launch.
        """
        ranks = [dict(o.get("marks") or {}) for o in self.outcomes.values()]
        return _timings.phases(created, self.marks.get("launched", created),
                               self.marks.get("submitted", created), ranks)

    def stop(self, reason: str = "stopped by the user") -> None:
        """End every rank now; the outcome is ``stopped``."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            self._abort_now(reason)

    def _abort_now(self, reason: str) -> None:  # caller holds the lock
        if self._aborted_at is None:
            self._aborted_at = time.monotonic()
            try:
                self._abort(reason)
            except Exception:  # cancelling the tasks below still frees the workers
                logger.exception("could not send the abort to the ranks")

    # -- the watcher thread ------------------------------------------------------------

    def _watch(self) -> None:
        try:
            while len(self.outcomes) < self.size:
                time.sleep(_POLL)
                with self._lock:
                    self._collect()
                    self._check_liveness()
                    self._enforce_grace()
            self._settle()
        except BaseException as e:  # never leave the future unsettled
            logger.exception("distributed launch watcher failed")
            with contextlib.suppress(Exception):
                self.future.set_exception(e)
            self._run_cleanups()

    def _record(self, rank: int, outcome: dict[str, Any]) -> None:
        self.outcomes[rank] = outcome
        if outcome.get("status") == "error":
            self._failures.append(rank)
            self._abort_now(f"rank {rank} failed: {outcome.get('error', 'error')}")

    def _collect(self) -> None:
        for rank, fut in enumerate(self.futures):
            if rank in self.outcomes or not fut.done():
                continue
            if fut.cancelled():
                self._record(rank, {"status": "stopped", "action": "stop",
                                    "reason": "its task was cancelled", "aborted": True})
                continue
            try:
                outcome = _load_value(dict(fut.result()))
            except BaseException as e:  # the worker or engine under the rank died
                outcome = {"status": "error", "lost": True,
                           "error": f"the worker {self.slots[rank].name} of rank {rank} was "
                                    f"lost: {type(e).__name__}: {e}", "traceback": ""}
            self._record(rank, outcome)

    def _check_liveness(self) -> None:
        if self._liveness is None:
            return
        now = time.time()
        limit = self.options.heartbeat_timeout
        for rank, seen in self._liveness().items():
            if rank in self.outcomes or rank >= self.size or now - seen <= limit:
                continue
            self.futures[rank].cancel()
            self._record(rank, {"status": "error", "lost": True, "traceback": "",
                                "error": f"rank {rank} on worker {self.slots[rank].name} sent "
                                         f"no heartbeat for {now - seen:.0f} s (limit "
                                         f"{limit:g} s): its worker or process is gone"})

    def _enforce_grace(self) -> None:
        if self._aborted_at is None or time.monotonic() - self._aborted_at < self.options.grace:
            return
        for rank, fut in enumerate(self.futures):
            if rank not in self.outcomes:
                fut.cancel()
                self._record(rank, {"status": "stopped", "action": "stop", "aborted": True,
                                    "reason": f"did not end within {self.options.grace:g} s "
                                              "of the abort; its task was cancelled"})

    def _run_cleanups(self) -> None:
        for cleanup in self._cleanups:
            try:
                cleanup()
            except Exception:
                logger.exception("cleanup after a distributed launch failed")
        self._cleanups = []

    def _settle(self) -> None:
        self._run_cleanups()
        with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
            self.future.set_result(self.combined())

    def combined(self) -> dict[str, Any]:
        """Return the run's outcome from its ranks' outcomes."""
        ranks = [self.outcomes.get(r, {"status": "running"}) for r in range(self.size)]
        first = ranks[0]
        if self._stop_reason is not None:
            return {"status": "stopped", "action": "stop", "reason": self._stop_reason,
                    "ranks": ranks}
        # A trial stopped or pruned by its search ends rank 0 at a report; peers that were
        # waiting for it in a collective then fail, which is not the trial's failure.
        if first.get("status") == "stopped" and not first.get("aborted"):
            return {**_public(first), "ranks": ranks}
        if self._failures:
            root = min(self._failures, key=lambda r: _blame(ranks[r], self._failures.index(r)))
            cause = ranks[root]
            where = f" on {cause['host']}" if cause.get("host") else ""
            others = [f"rank {r}: {ranks[r].get('error')}" for r in self._failures if r != root]
            error = f"rank {root}{where} failed: {cause.get('error')}"
            traceback = f"Rank {root}{where}:\n{cause.get('traceback') or '(no traceback)'}"
            if others:
                traceback += "\nThen " + "; ".join(others)
            return {"status": "error", "rank": root, "error": error, "traceback": traceback,
                    "ranks": ranks}
        return {**_public(first), "ranks": ranks}


# What a collective says when a peer went away: the peer's failure is the cause.
_PEER_FAILURES = ("connection closed by peer", "connection reset by peer", "broken pipe",
                  "remote worker crash", "timed out", "timeout", "horovodinternalerror",
                  "nccl communicator was aborted", "socket closed", "peer")


def _blame(outcome: dict[str, Any], seen: int) -> tuple[bool, bool, float, int]:
    """Return the sort key of failed ranks, most likely cause first.

    First a dead process or worker, then an error that is not a collective's complaint
    about a peer, then the earliest.
    """
    text = f"{outcome.get('error', '')}".lower()
    return (not (outcome.get("killed") or outcome.get("lost")),
            any(p in text for p in _PEER_FAILURES),
            float(outcome.get("failed_at", math.inf)), seen)


class _GroupFuture(Future[dict[str, Any]]):
    """The group's future; cancelling it (as a search does on stop) ends the ranks."""

    def __init__(self, group: RankGroup) -> None:
        super().__init__()
        self._group = group

    def cancel(self) -> bool:
        if self.done():
            return False
        self._group.stop("cancelled")
        return super().cancel()


def _load_value(outcome: dict[str, Any]) -> dict[str, Any]:
    """Unpickle a rank's return value here, in the kernel."""
    import cloudpickle

    data = outcome.pop("value_pickle", None)
    if data is not None:
        try:
            outcome["value"] = cloudpickle.loads(data)
        except Exception as e:
            outcome["value"] = f"cannot load the return value of rank {outcome.get('rank')}: {e}"
    return outcome


def _public(outcome: dict[str, Any]) -> dict[str, Any]:
    """run_trial's fields of a rank outcome (the driver stores these)."""
    out = {k: v for k, v in outcome.items() if k in ("status", "action", "reason", "error",
                                                       "traceback")}
    if outcome.get("status") == "ok":
        out["return"] = plain_value(outcome.get("value"))
    return out
