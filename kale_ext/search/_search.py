"""``kale.Search``: a load-balanced hyperparameter search over a kale cluster."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_ext import config, registry, views
from kale_ext._errors import KaleError, SearchError
from kale_ext.search._arguments import check_arguments
from kale_ext.search._driver import Driver
from kale_ext.search._remote import DriverProcess, detached, driver_record, spawn
from kale_ext.search._resume import ClassOrInstance, StoredFunction
from kale_ext.search._runs import TrialRun
from kale_ext.search._summary import SearchSummary, summarize_store
from kale_ext.search._timeouts import DEFAULT_GRACE, check_settings
from kale_ext.trial import checkpoint_root, open_store, pickle_function

if TYPE_CHECKING:
    import pandas as pd

    from kale_ext.clusters import Cluster
    from kale_ext.export import Exported
    from kale_ext.search._space import Space
    from kale_ext.search.schedulers import Scheduler
    from kale_ext.store import Store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Search:
    """A hyperparameter search: trials of ``fn(config)`` run on ``cluster``'s workers.

    Parameters
    ----------
    fn
        The trial: an ordinary function ``train(config)`` that calls ``kale.report``.
    space
        Names to domains (``kale.uniform``, ``kale.choice``, ...), constants or nested dicts.
    metric, mode
        The reported metric to optimise, and ``"max"`` or ``"min"``.
    algorithm
        The sampler: ``"random"``, ``"grid"``, ``"tpe"``, ``"cmaes"``, ``"qmc"``.
    scheduler
        Early stopping: ``kale.FIFO()`` (default), ``ASHA``, ``Hyperband``,
        ``MedianStopping`` or ``PBT``.
    trials
        How many trials to run (a grid search stops earlier when its grid is exhausted).
    max_concurrent
        Trials at once; default: as many as the cluster has workers (re-read as it scales).
    prefetch
        Sampled trials queued on the cluster beyond those it runs at once, so that a
        worker never waits for the driver between short trials. Default 0: each trial is
        sampled when a worker is free, knowing every result so far.
    retries
        How often a trial whose worker died (killed, job cancelled, walltime) is retried.
        A trial whose own code raises fails at once, with its traceback.
    cluster
        A kale cluster; default: ``kale.start_cluster()`` (the local default).
    store
        The SQLite file; default: ``<kale store dir>/<name>.kale.sqlite`` on local disk.
    name
        A short name (letters, digits, ``._-``); default: a generated one.
    seed
        Seed of the sampler, for repeatable searches.
    heartbeat_timeout
        Seconds without a message from a running trial before its worker counts as lost.
    report_timeout
        Seconds a trial's ``report`` waits for the driver. Past it the trial takes the
        driver for dead and ends, freeing its worker; ``Search.resume`` re-runs it.
    trial_timeout
        Seconds an attempt of a trial may run (None: no limit). Past it the trial is told
        to stop and ends FAILED, "timeout after N s"; one that does not stop is
        hard-stopped after ``stop_grace``.
    stop_grace
        Seconds a trial told to end (timeout, stop, pause, restart, scheduler) may run on
        before kale ends its worker process (a Dask worker is restarted by its nanny, an
        ipyparallel engine killed and replaced). Other trials in that process are
        requeued, with no retry counted.
    workers_per_trial
        Workers each trial runs on: with more than one, each trial runs as that many
        data-parallel ranks (see :func:`kale.train_distributed`); every rank reports,
        and rank 0's reports drive the scheduler.
    engine
        ``"torch"`` or ``"horovod"``: how the ranks of a distributed trial meet.
    log_to
        ``"tensorboard:DIR"``: keep a TensorBoard log of the running search in
        ``DIR/<name>/``, written from the store beside the driver (never by the trials);
        see :class:`kale_ext.export.LiveLog`. Not kept by ``Search.resume``.
    detach
        Run the driver in a process of its own that outlives this kernel, steered from
        any kernel (``kale.search(name)``), the sidebar and ``kale search``. Default
        (``kale.search-driver: auto``): when started from a Jupyter kernel.
    """

    def __init__(
        self,
        fn: Callable[[dict[str, Any]], Any],
        space: Mapping[str, Any] | Space,
        *,
        metric: str,
        mode: str = "max",
        algorithm: str = "random",
        scheduler: Scheduler | None = None,
        trials: int = 16,
        max_concurrent: int | None = None,
        prefetch: int = 0,
        retries: int = 1,
        cluster: Cluster | None = None,
        store: str | Path | None = None,
        name: str | None = None,
        seed: int | None = None,
        heartbeat_timeout: float = 10.0,
        report_timeout: float = 60.0,
        trial_timeout: float | None = None,
        stop_grace: float = DEFAULT_GRACE,
        workers_per_trial: int = 1,
        engine: str = "torch",
        log_to: str | None = None,
        detach: bool | None = None,
        _store: Store | None = None,
    ) -> None:
        from kale_ext.search import FIFO, Space, make_sampler

        check_arguments(fn=fn, mode=mode, trials=trials, retries=retries,
                        workers_per_trial=workers_per_trial, prefetch=prefetch, engine=engine,
                        max_concurrent=max_concurrent, detach=detach, metric=metric)
        self.name = name or f"search-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        if not _NAME.match(self.name):
            raise SearchError(
                f"Search name {self.name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit."
            )
        self.fn = fn
        self.fn_pickle = fn.pickled if isinstance(fn, StoredFunction) else pickle_function(fn)
        self.space = space if isinstance(space, Space) else Space(space)
        self.metric, self.mode, self.algorithm, self.seed = metric, mode, algorithm, seed
        self.scheduler = scheduler if scheduler is not None else FIFO()
        self.sampler = make_sampler(algorithm, self.space, mode=mode, seed=seed)
        self.n_trials, self.max_concurrent, self.retries = trials, max_concurrent, retries
        self.prefetch = prefetch
        self.workers_per_trial, self.engine = workers_per_trial, engine
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.report_timeout = float(report_timeout)
        self.trial_timeout, self.stop_grace = check_settings(trial_timeout, stop_grace)
        self._cluster = cluster
        self.channel_host: str | None = None
        if log_to is not None:
            from kale_ext.export import log_folder

            log_folder(log_to)  # a bad spec fails here, not when the search starts
        self.log_to = log_to
        self.detach = detach
        self._launch: str | None = None  # the token of the process started to run the driver
        self._restore_on_start = False  # resumed: the driver takes up the stored trials
        self._cluster_id: str | None = None
        self.store_path = Path(store).expanduser().resolve() if store else \
            config.store_dir() / f"{self.name}.kale.sqlite"
        self.checkpoint_dir = checkpoint_root(self.store_path)
        self.store = _store if _store is not None else self._create_store()
        self._driver: Driver | DriverProcess = Driver(self, self.store, self.sampler,
                                                      self.scheduler)

    # -- construction ----------------------------------------------------------------

    def _definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fn": getattr(self.fn, "__qualname__", repr(self.fn)),
            "fn_pickle": base64.b64encode(self.fn_pickle).decode(),
            "space": self.space.to_dict(),
            "metric": self.metric,
            "mode": self.mode,
            "algorithm": self.algorithm,
            "scheduler": self.scheduler.to_dict(),
            "trials": self.n_trials,
            "max_concurrent": self.max_concurrent,
            "prefetch": self.prefetch,
            "retries": self.retries,
            "seed": self.seed,
            "heartbeat_timeout": self.heartbeat_timeout,
            "report_timeout": self.report_timeout,
            "trial_timeout": self.trial_timeout,
            "stop_grace": self.stop_grace,
            "workers_per_trial": self.workers_per_trial,
            "engine": self.engine,
            "created": time.time(),
        }

    def _create_store(self) -> Store:
        if self.store_path.exists():
            raise SearchError(
                f"Store {self.store_path} already exists. Resume it with "
                f"kale.Search.resume({str(self.store_path)!r}) or pass another store= or name=."
            )
        self.store_path.parent.mkdir(parents=True, exist_ok=True)
        store = open_store(self.store_path, objective=(self.metric, self.mode))
        store.create_search(self._definition())
        return store

    @property
    def runs(self) -> dict[int, TrialRun]:
        """The trials by number, as the driver keeps them (state, config, attempt, ...)."""
        return self._driver.runs

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            from kale_ext.clusters import connect, start_cluster

            self._cluster = connect(self._cluster_id) if self._cluster_id else start_cluster()
        return self._cluster

    def _attach(self, cluster_id: str | None) -> None:
        """Become a handle on this search's driver process: read the store, send controls."""
        if not self.store.readonly:
            self.store.close()
            self.store = open_store(self.store_path, readonly=True)
        self._cluster_id = cluster_id
        self._driver = DriverProcess(self, cluster_id)

    # -- running -----------------------------------------------------------------------

    def start(self) -> Search:
        """Start the search in the background and return at once."""
        if self._driver.running:
            raise SearchError(f"Search {self.name!r} is already running.")
        cluster = self.cluster
        if detached(self.detach, cluster):
            self._attach(cluster.id)  # the store's one writer is the driver's process
            spawn(self, cluster, log_to=self.log_to)
            return self
        if isinstance(self._driver, DriverProcess):  # a handle started here: run it here
            self.store = open_store(self.store_path, objective=(self.metric, self.mode))
            self._driver = Driver(self, self.store, self.sampler, self.scheduler)
            self._restore_on_start = True
        if self.channel_host is None:
            self.channel_host = cluster.channel_host()
        # kale retries trials itself (as new attempts, their reports kept apart).
        cluster.disable_task_retries()
        if self._restore_on_start:
            self._driver.restore()
            self._restore_on_start = False
        self._driver.start()
        if self.log_to is not None:
            from kale_ext.export import live_log

            live_log(self.log_to, self.name).follow(self.store, self._driver.done)
        registry.write("searches", self.name, {
            "name": self.name, "store": str(self.store_path), "cluster": cluster.id,
            "control": self._driver.channel["address"], "started": time.time(),
            **driver_record(self._launch),
        })
        return self

    def wait(self, timeout: float | None = None) -> Search:
        """Block until the search ends; re-raise a driver failure."""
        driver = self._started()
        if not driver.done.wait(timeout):
            raise TimeoutError(f"Search {self.name!r} still running after {timeout} s.")
        if driver.error is not None:
            raise SearchError(f"The driver of search {self.name!r} failed: {driver.error}") \
                from driver.error
        return self

    @property
    def running(self) -> bool:
        """Whether the search's driver is running."""
        return self._driver.running

    def _started(self) -> Driver | DriverProcess:
        if isinstance(self._driver, Driver) and self._driver.thread is None:
            raise SearchError(f"Search {self.name!r} is not started; call search.start().")
        return self._driver

    # -- control: the whole search or one trial ------------------------------------------

    def stop(self, trial: int | None = None) -> None:
        """Stop one running trial, or the whole search when ``trial`` is None."""
        self._started().stop(trial)

    def pause(self, trial: int | None = None) -> None:
        """Pause one trial, or the whole search when ``trial`` is None.

        A paused trial checkpoints and leaves its worker. A paused search starts no new
        trials and its running ones pause.
        """
        self._started().pause(trial)

    def _resume_running(self, trial: int | None = None) -> None:
        """Resume a paused trial from its checkpoint, or the whole paused search."""
        self._started().resume(trial)

    def restart(self, trial: int, **params: Any) -> None:
        """Run trial ``trial`` again from scratch, with some parameters changed.

        The new values are checked against the search space first.
        """
        self._started().restart(trial, params)

    # -- results -------------------------------------------------------------------------

    def results(self) -> pd.DataFrame:
        """One row per trial: params, state, last and best metrics, durations, worker."""
        from kale_ext.search._results import results_frame

        return results_frame(self.store, self.metric, self.mode)

    def history(self, trial: int) -> pd.DataFrame:
        """Every metric row trial ``trial`` reported, in order."""
        from kale_ext.search._results import history_frame

        return history_frame(self.store, trial)

    def export(self, to: str, **options: Any) -> Exported:
        """Export the search to ``to``; see :func:`kale_ext.export.export` for ``options``."""
        from kale_ext.export import export

        return export(self.store, to, **options)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best trial so far: number, config and best metric value."""
        return self.summary().best

    def summary(self) -> SearchSummary:
        """Trials by state, progress and the best trial, as the store has them now."""
        return summarize_store(self.store, mode=self.mode, planned=self.n_trials)

    def panel(self, **kwargs: Any) -> Any:
        """Return the live control panel: trial table, curves, parameters, resources, controls.

        Keyword arguments go to the ``search`` view registered in the ``kale_ext.views``
        entry-point group (kale's own: :class:`kale_ext.widgets.SearchPanel`). Needs the
        widget extras: ``pip install 'kale-ext[widgets]'``.
        """
        factory = views.view_factory("search")
        if factory is None:
            raise KaleError("No search panel is installed (no 'search' view in the "
                            "kale_ext.views entry points); install the widget extras with "
                            "pip install 'kale-ext[widgets]'.")
        return factory(self, **kwargs)

    def _ipython_display_(self) -> None:
        try:
            panel = self.panel()
        except Exception as e:  # no widget packages (the KaleError names them): text
            print(f"{self!r}\n({e})")
            return
        panel._ipython_display_()

    def __repr__(self) -> str:
        return f"<kale.Search {self.name!r} {self.metric}/{self.mode}: " \
               f"{self.summary().describe()}>"

    # -- resume --------------------------------------------------------------------------

    @classmethod
    def _resume_store(cls, store: str | Path, *, cluster: Cluster | None = None,
                      fn: Callable[[dict[str, Any]], Any] | None = None,
                      start: bool = True, detach: bool | None = None,
                      log_to: str | None = None) -> Search:
        """Continue a search from its store after the kernel (or driver) died.

        Completed, pruned, stopped and failed trials are kept, not rerun; trials that
        were pending or running are queued again and continue from their latest
        checkpoint; every stored metric row stays. ``detach`` and ``log_to`` are as
        for a new search.
        """
        from kale_ext.search._resume import load_search

        search = load_search(cls, Path(store).expanduser().resolve(), cluster=cluster, fn=fn,
                             detach=detach, log_to=log_to)
        search._restore_on_start = True
        if start:
            search.start()
        return search

    resume = ClassOrInstance(_resume_store, _resume_running)
