"""``kale.train_distributed``: data-parallel training across a cluster's workers.

A :class:`TrainingRun` owns a metric channel server and a SQLite store of its own (the
same store a search uses, with the run as trial 0): every rank's ``kale.report`` rows
are kept with their rank, so ``results()`` and widgets show per-rank curves live.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_ext import config as kale_config
from kale_ext import registry
from kale_ext._errors import ConfigError, TrialError
from kale_ext.channel import ChannelInfo, ChannelServer, Message, new_key
from kale_ext.training._group import LaunchOptions, RankGroup, launch
from kale_ext.training._rank import abort_decision
from kale_ext.training._timings import summary
from kale_ext.trial import (
    CONTINUE,
    Ingest,
    TrialContext,
    TrialEvents,
    TrialState,
    checkpoint_root,
    open_store,
    pickle_function,
)

if TYPE_CHECKING:
    import pandas as pd

    from kale_ext.clusters import Cluster
    from kale_ext.export import Exported

logger = logging.getLogger(__name__)


class RankError(TrialError):
    """A rank of a distributed run failed; ``rank`` names it, ``traceback`` is its own."""

    def __init__(self, message: str, *, rank: int, traceback: str = "") -> None:
        super().__init__(message, traceback=traceback)
        self.rank = rank


class TrainingRun:
    """A distributed training run; returned by :func:`kale.train_distributed`.

    Attributes
    ----------
    name : str
        The run's name (its store is ``<store-dir>/<name>.kale.sqlite``).
    state : str
        ``running``, ``completed``, ``failed`` or ``stopped``.
    attempt : int
        0, then 1, 2, ... after each restart (``restarts=``).
    checkpoint : str or None
        The latest checkpoint rank 0 saved with ``kale.save_checkpoint``.
    ranks : dict
        What each started rank said about itself: host, pid, worker.
    store : kale_ext.store.Store
        The run's store: trial 0, with a metric row per report of every rank.
    timings : dict
        Where the launch of the current attempt spent its time, in seconds (see
        :attr:`timings`).
    """

    def __init__(self, fn: Callable[[dict[str, Any]], Any], cluster: Cluster,
                 options: LaunchOptions, config: dict[str, Any], *, name: str | None,
                 store: str | Path | None, report_timeout: float, restarts: int = 0) -> None:
        self._began = time.time()  # the start of the current attempt's launch
        options.check()
        if not isinstance(restarts, int) or restarts < 0:
            raise ConfigError(f"restarts must be an integer >= 0, but got {restarts!r}.")
        self.name = name or f"train-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        self.options = options
        self.cluster = cluster
        self.state = "running"
        self.attempt = 0
        self.restarts_left = restarts
        self.checkpoint: str | None = None  # the latest checkpoint rank 0 saved
        self.ranks: dict[int, dict[str, Any]] = {}
        self._ended: set[tuple[int, int]] = set()  # (attempt, rank) that said end
        self._outcome: dict[str, Any] | None = None
        self._done = threading.Event()
        self._stopping = False
        self._fn_pickle = pickle_function(fn)
        path = Path(store).expanduser().resolve() if store else \
            kale_config.store_dir() / f"{self.name}.kale.sqlite"
        self.store = open_store(path)
        self.store.create_search({"name": self.name, "kind": "training", "engine": options.engine,
                                  "workers": options.workers, "metric": None, "mode": None,
                                  "fn": getattr(fn, "__qualname__", repr(fn)),
                                  "created": time.time()})
        self.store.add_trial(0, config)
        key = new_key()
        self._server = ChannelServer(key, Ingest(self.store, _RunEvents(self)),
                                     host=cluster.channel_host())
        self._server.start()
        self._channel = ChannelInfo.create(self._server.address, key).to_dict()
        self._context = TrialContext(trial=0, attempt=0, rank=0, config=config,
                                     checkpoint_dir=str(checkpoint_root(path) / "trial-0"),
                                     report_timeout=report_timeout)
        try:
            self._launch()
        except BaseException as e:
            self._server.close()
            self.store.transition(0, TrialState.FAILED, f"launch failed: {e}")
            self.store.set_search_state("failed")
            self.store.close()
            raise
        self.store.set_search_state("running")
        registry.write("runs", self.name, {"name": self.name, "store": str(path),
                                           "cluster": cluster.id, "engine": options.engine,
                                           "workers": options.workers, "started": time.time()})

    def _launch(self) -> None:
        """Start the ranks of the current attempt, from the latest checkpoint if any."""
        from dataclasses import replace

        # An abort of the last attempt sticks otherwise.
        self._server.set_decision(0, CONTINUE.to_dict())
        context = replace(self._context, attempt=self.attempt, restore_from=self.checkpoint)
        self._group: RankGroup = launch(
            self.cluster, self._fn_pickle, context, self._channel, self.options,
            abort=lambda why: self._server.set_decision(0, abort_decision(why).to_dict()),
            liveness=self._liveness)
        where = f" from {self.checkpoint}" if self.checkpoint else ""
        self.store.transition(0, TrialState.RUNNING,
                              f"{self.options.workers} ranks launched{where}",
                              attempt=self.attempt)
        self._group.future.add_done_callback(self._finished)

    # -- the channel's side ------------------------------------------------------------

    def _liveness(self) -> dict[int, float]:
        """When each started rank was last heard from; ranks that said ``end`` are done."""
        return {rank: t for (trial, attempt, rank), t in self._server.last_seen().items()
                if attempt == self.attempt and (attempt, rank) not in self._ended}

    def _finished(self, future: Any) -> None:
        try:
            outcome = future.result()
        except BaseException as e:
            outcome = {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": "",
                       "rank": -1, "ranks": []}
        status = outcome.get("status")
        if status == "error" and self.restarts_left > 0 and not self._stopping \
                and self._restart(outcome):
            return
        self._outcome = outcome
        try:
            if status == "ok":
                self.state = "completed"
                self.store.transition(0, TrialState.COMPLETED, "every rank returned")
            elif status == "error":
                self.state = "failed"
                self.store.transition(0, TrialState.FAILED, outcome["error"],
                                      error=outcome.get("traceback", ""))
            else:
                self.state = "stopped"
                self.store.transition(0, TrialState.STOPPED, outcome.get("reason", "stopped"))
            self.store.set_search_state(self.state)
        finally:
            self._server.close()
            registry.remove("runs", self.name)
            self._done.set()

    def _restart(self, outcome: dict[str, Any]) -> bool:
        """Launch the next attempt after a failure; False when that launch fails too."""
        self.restarts_left -= 1
        self.store.transition(0, TrialState.FAILED, outcome["error"],
                              error=outcome.get("traceback", ""))
        self.attempt += 1
        self.ranks = {}
        self._began = time.time()
        try:
            self._launch()
        except Exception as e:
            outcome["error"] += f"; the restart failed to launch: {e}"
            return False
        logger.info("training run %s restarted (attempt %d) after: %s", self.name,
                    self.attempt, outcome["error"])
        return True

    # -- the user's side ---------------------------------------------------------------

    def done(self) -> bool:
        """Whether every rank has ended."""
        return self._done.is_set()

    @property
    def timings(self) -> dict[str, float]:
        """Where the launch of the current attempt spent its time, in seconds.

        ``setup`` (the run's store and metric channel), ``placement`` (holding and
        probing workers, submitting the ranks), ``process_start`` (until the rank's
        process exists: task scheduling, fork or interpreter start), ``imports`` (kale,
        torch, the training function), ``rendezvous`` (the metric channel and the
        process group; Horovod's ``hvd.init()`` is in the function, so in the next),
        ``first_batch`` (until the first ``kale.report``, or the return without one).
        The rank phases are those of the rank that reported last, and come as ranks end;
        before that only ``setup`` and ``placement`` are there. They add up to the time
        from the call to that first report.
        """
        group = getattr(self, "_group", None)
        if group is None:
            return {}
        return group.timings(self._began)

    def wait(self, timeout: float | None = None) -> list[Any]:
        """Block until the run ends; the return value of each rank, by rank.

        Raises
        ------
        RankError
            When a rank failed: the message names the rank and its host, ``traceback``
            holds the rank's traceback (or last output, when its process was killed).
        TimeoutError
            When ``timeout`` seconds pass first.
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"Training run {self.name!r} still running after {timeout} s.")
        outcome = self._outcome or {}
        if outcome.get("status") == "error":
            raise RankError(f"Training run {self.name!r} failed: {outcome['error']}\n"
                            f"{outcome.get('traceback', '')}".rstrip(),
                            rank=int(outcome.get("rank", -1)),
                            traceback=outcome.get("traceback", ""))
        return [r.get("value") for r in outcome.get("ranks", [])]

    def stop(self, timeout: float | None = 30.0) -> None:
        """End every rank now (a rank blocked in a collective too) and wait for it."""
        self._stopping = True
        if not self._done.is_set():
            self._group.stop()
        self._done.wait(timeout)

    def results(self) -> pd.DataFrame:
        """Every reported row of every rank: ``rank``, ``step``, ``time`` and the metrics."""
        import pandas as pd

        rows = [{"rank": m.rank, "attempt": m.attempt, "seq": m.seq, "step": m.step,
                 "time": m.time, **m.values} for m in self.store.metrics(0)]
        columns = ["rank", "attempt", "seq", "step", "time"]
        frame = pd.DataFrame(rows, columns=None if rows else columns)
        return frame.sort_values(["rank", "seq"], kind="stable").reset_index(drop=True) \
            if rows else frame

    def export(self, to: str, **options: Any) -> Exported:
        """Export the run (trial 0, every rank's rows); see :func:`kale_ext.export.export`."""
        from kale_ext.export import export

        return export(self.store, to, **options)

    def close(self) -> None:
        """Stop the run if it is still going, and close its store."""
        self.stop()
        self.store.close()

    def __repr__(self) -> str:
        timings = self.timings
        launch = f"; launch {sum(timings.values()):.2f} s: {summary(timings)}" if timings else ""
        return (f"<TrainingRun {self.name} {self.options.engine} x{self.options.workers} "
                f"{self.state}{launch}>")


class _RunEvents(TrialEvents):
    """What the ranks' messages mean to a training run: trial 0, its current attempt."""

    def __init__(self, run: TrainingRun) -> None:
        self.run = run

    def attempt(self, trial: int) -> int | None:
        return self.run.attempt if trial == 0 else None

    def on_start(self, message: Message) -> None:
        self.run.ranks[message.rank] = dict(message.data)

    def on_end(self, message: Message) -> None:
        self.run._ended.add((message.attempt, message.rank))

    def on_checkpoint(self, trial: int, step: int | None, path: str) -> None:
        self.run.checkpoint = path


def train_distributed(fn: Callable[[dict[str, Any]], Any], cluster: Cluster,
                      workers: int = 2, engine: str = "torch",
                      config: dict[str, Any] | None = None, *, backend: str | None = None,
                      timeout: float = 300.0, grace: float = 5.0,
                      heartbeat_timeout: float = 10.0, place_wait: float = 10.0,
                      name: str | None = None, store: str | Path | None = None,
                      report_timeout: float = 60.0, restarts: int = 0,
                      warm: bool = True) -> TrainingRun:
    """Run ``fn(config)`` as ``workers`` data-parallel ranks, one per worker of ``cluster``.

    Returns at once with a :class:`TrainingRun`; ``run.wait()`` blocks.

    Parameters
    ----------
    fn : callable
        Ordinary training code taking ``config``. With ``engine="torch"`` the default
        process group is set up before it runs (use ``DistributedDataParallel`` or
        ``torch.distributed`` collectives directly); with ``engine="horovod"`` call
        ``hvd.init()`` as usual. ``kale.rank()``, ``kale.world_size()``,
        ``kale.local_rank()``, ``kale.shard()`` and ``kale.report()`` work inside.
    cluster : kale_ext.Cluster
        A Dask or ipyparallel cluster with at least ``workers`` idle workers.
    workers : int
        Ranks, each on its own worker.
    engine : {"torch", "horovod"}
        torch.distributed (env:// rendezvous at rank 0's worker) or Horovod over gloo
        (rendezvous server in this kernel).
    config : dict, optional
        Passed to ``fn`` on every rank.
    backend : {"gloo", "nccl"}, optional
        torch backend; default nccl when every worker has a GPU, else gloo.
    timeout : float
        Seconds a torch collective may wait for its peers before failing.
    grace : float
        Seconds the other ranks get to end after one failed, before their tasks are
        cancelled.
    heartbeat_timeout : float
        Seconds a started rank may be silent before its worker is taken for lost.
    place_wait : float
        Seconds to wait for enough idle workers.
    name, store : str, optional
        The run's name and store path (default ``<kale store-dir>/<name>.kale.sqlite``).
    report_timeout : float
        Seconds a rank's ``kale.report`` waits for this kernel.
    restarts : int
        Times to relaunch every rank after a failure. A relaunched rank's
        ``kale.load_checkpoint()`` returns the latest ``kale.save_checkpoint`` of rank 0
        (the checkpoint folder, under ``kale.checkpoint-dir``, must be reachable from
        every worker: kale warns when one does not see it).
    warm : bool
        Fork each rank from a process on its worker that has imported torch once (the
        first run on a worker starts it), instead of a new Python per rank. Every run
        forks from the same freshly imported state, so nothing of one run reaches the
        next; ``False`` starts a new interpreter per rank.
    """
    options = LaunchOptions(workers=workers, engine=engine, backend=backend, timeout=timeout,
                            grace=grace, heartbeat_timeout=heartbeat_timeout,
                            place_wait=place_wait, warm=warm)
    return TrainingRun(fn, cluster, options, dict(config or {}), name=name, store=store,
                       report_timeout=report_timeout, restarts=restarts)


def launch_trial(cluster: Cluster, fn_pickle: bytes, context: TrialContext,
                 channel: dict[str, Any], *, workers: int, engine: str, server: ChannelServer,
                 heartbeat_timeout: float) -> Future[Any]:
    """Run one attempt of a search trial as ``workers`` ranks; a future of its outcome.

    Used by the search driver for ``workers_per_trial > 1``: the ranks report to the
    search's channel ``server`` (rank 0's reports drive the scheduler) and the future
    settles like ``run_trial``'s. Placement errors come back as the future's exception,
    which the driver treats as a lost worker.
    """
    trial, attempt = context.trial, context.attempt

    def liveness() -> dict[int, float]:
        return {k[2]: t for k, t in server.last_seen().items() if k[:2] == (trial, attempt)}

    def abort(why: str) -> None:
        server.set_decision(trial, abort_decision(why).to_dict())

    try:
        group = launch(cluster, fn_pickle, context, channel,
                       LaunchOptions(workers=workers, engine=engine,
                                     heartbeat_timeout=heartbeat_timeout),
                       abort=abort, liveness=liveness)
    except Exception as e:
        failed: Future[Any] = Future()
        failed.set_exception(e)
        return failed
    return group.future
