"""The ipyparallel backend: ``ipyparallel.Cluster`` with its local or batch engine launchers.

The controller runs on the login side as its own process (it outlives the kernel);
engines run locally or in batch jobs written by ipyparallel's launchers. Engines come
in *engine sets*: one Slurm job running ``srun`` with n engines (the default), or one
job per engine (``engines_per_job=1``). Scaling adds sets and stops whole sets
(or shuts single engines down gracefully). ipyparallel's cluster file is the
registry record's ``address``; its profile folder, with the controller's keys, is
the record's private ``security`` folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import ipyparallel

from kale_ext import config, registry
from kale_ext._errors import ClusterError
from kale_ext.clusters import _ipp_idle, batch
from kale_ext.clusters._base import ClusterRecord, ClusterStatus, JobInfo, Slot, WorkerInfo
from kale_ext.clusters._idle import timeout_seconds
from kale_ext.clusters._ipp_adapt import Adaptor
from kale_ext.clusters._ipp_engine import EngineFuture, describe, pack, run_task, unpack
from kale_ext.clusters._ipp_health import check_alive, jobs_text
from kale_ext.clusters._ipp_launchers import ENGINE_LAUNCHERS, check_options
from kale_ext.clusters._ipp_loop import IppLoop
from kale_ext.clusters._ipp_scaling import EngineSetScaling
from kale_ext.clusters._ipp_stop import kill_engine_of
from kale_ext.clusters._network import contact_host
from kale_ext.clusters._start_checks import seconds

logger = logging.getLogger(__name__)

def _write_private(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class IPyParallelCluster(EngineSetScaling):
    """An ipyparallel cluster: a controller process and engines, local or in batch jobs.

    Build it with ``kale.start_cluster(kind, backend="ipyparallel", workers=n, ...)`` or
    reconnect with ``kale.connect(id)``. ``client`` is the ``ipyparallel.Client``,
    ``view`` a ``LoadBalancedView`` over all engines.
    """

    backend = "ipyparallel"

    def __init__(self, record: ClusterRecord, ipp_cluster: Any, loop: IppLoop) -> None:
        super().__init__(record)
        self._ipp = ipp_cluster
        self._loop = loop
        self._client: Any = None
        self._view: Any = None
        self._lock = threading.RLock()
        self._info: dict[int, dict[str, Any]] = {}
        self._adaptor: Adaptor | None = None
        self._mtime = self._file_mtime()

    # ----------------------------------------------------------------- construction
    @classmethod
    def check(cls, kind: str, options: dict[str, Any]) -> None:
        """Check every option of a start of ``kind``; start nothing, ask no queue."""
        opts = check_options(kind, dict(options))
        timeout_seconds(options)
        if opts.get("start_timeout") is not None:
            seconds("start_timeout", opts["start_timeout"], allow_zero=False)

    @classmethod
    def start(cls, kind: str, options: dict[str, Any]) -> IPyParallelCluster:
        cls.check(kind, options)
        opts = check_options(kind, dict(options))
        idle_timeout = timeout_seconds(options)
        # The controller listens where the engines (on compute nodes) reach this host.
        opts["interface_host"] = contact_host(kind, opts)
        workers = int(opts.pop("workers", 1))
        timeout = float(opts.pop("start_timeout", None) or config.get("start-timeout", 120))
        record = ClusterRecord(
            id=ClusterRecord.new_id(), backend=cls.backend, kind=kind, address="",
            profile=opts.pop("profile", None), options={**opts, "engine_sets": {}},
        )
        profile_dir = registry.private_dir("clusters", record.id) / "ipython"
        for folder in (profile_dir, profile_dir / "security"):
            folder.mkdir(exist_ok=True, mode=0o700)
        ip = opts["interface_host"]
        loop = IppLoop.get()
        ipp = loop.call(lambda: ipyparallel.Cluster(
            engines=ENGINE_LAUNCHERS[kind], controller="local", controller_ip=ip,
            cluster_id=record.id, profile_dir=str(profile_dir), cluster_file="",
            shutdown_atexit=False, load_profile=False, log=logger,
            # CurveZMQ: without the controller's key (in the 0600 connection files) no one
            # reads its broadcasts (engines' output, heartbeats) or completes a handshake.
            controller_args=["--IPController.enable_curve=True"],
        ))
        record.address = str(profile_dir / "security" / f"cluster-{record.id}.json")
        record.security = str(profile_dir)
        self = cls(record, ipp, loop)
        try:
            loop.run(ipp.start_controller())
            record.owner_pid = int(ipp.controller.pid)  # the controller holds the cluster
            self._save()
            self._add_engines(workers)
            self.wait_for_workers(workers, timeout=timeout)
            _ipp_idle.spawn(record, idle_timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    @classmethod
    def connect(cls, record: ClusterRecord) -> IPyParallelCluster:
        loop = IppLoop.get()
        return cls(record, cls._load(record, loop), loop)

    @staticmethod
    def _load(record: ClusterRecord, loop: IppLoop) -> Any:
        path = record.address
        if not Path(path).is_file():
            raise ClusterError(
                f"Cluster {record.id}: its ipyparallel cluster file {path} is gone, so the "
                f"cluster was stopped. Remove the record with kale.stop({record.id!r})."
            )
        # cluster_file="" keeps launchers of this process from rewriting the shared file
        # when they notice a stop; kale writes it on purpose in _save().
        with open(path) as f:
            data = json.load(f)
        return loop.call(lambda: ipyparallel.Cluster.from_dict(data, cluster_file="", log=logger))

    def _file_mtime(self) -> float:
        try:
            return os.stat(self.record.address).st_mtime
        except (OSError, ValueError):
            return 0.0

    def _refresh(self) -> None:
        """Pick up scaling done by another process before changing anything."""
        data = registry.read("clusters", self.id)
        if data is not None:
            self.record = ClusterRecord.from_dict(data)
        if self._file_mtime() != self._mtime:
            self._ipp = self._load(self.record, self._loop)
            self._mtime = self._file_mtime()

    def _save(self) -> None:
        _write_private(Path(self.record.address), json.dumps(self._ipp.to_dict()))
        self._mtime = self._file_mtime()
        self.record.job_ids = [
            str(es.job_id) for es in self._ipp.engines.values() if getattr(es, "job_id", "")
        ]
        self.record.save()

    # ---------------------------------------------------------------- native handles
    @property
    def client(self) -> Any:
        """The ``ipyparallel.Client`` connected to this cluster's controller."""
        with self._lock:
            if self._client is None:
                self._client = self._loop.run(self._ipp.connect_client(), timeout=30)
            return self._client

    @property
    def view(self) -> Any:
        """A ``LoadBalancedView`` over all engines, present and future."""
        with self._lock:
            if self._view is None:
                self._view = self.client.load_balanced_view()
            return self._view

    # ---------------------------------------------------------------------- running
    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the least busy engine; a ``concurrent.futures.Future``.

        The native ``AsyncResult`` is the returned future's ``async_result``.
        """
        return EngineFuture(self.view.apply_async(run_task, pack(fn, args, kwargs)))

    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """Run ``fn(*args)`` once on every engine (a DirectView); results by engine name."""
        ids = self.client.ids
        if not ids:
            return {}
        replies = self.client[ids].apply_sync(run_task, pack(fn, args, {}))
        return {f"engine-{eid}": unpack(reply) for eid, reply in zip(ids, replies, strict=True)}

    def slots(self) -> list[Slot]:
        """Every registered engine; busy when it runs or has queued a task."""
        ids = sorted(self.client.ids)
        status = self.client.queue_status()
        return [Slot(e, f"engine-{e}", bool(status.get(e, {}).get("queue", 0)
                                            or status.get(e, {}).get("tasks", 0)))
                for e in ids]

    def submit_to(self, slot: Slot, fn: Callable[..., Any], *args: Any,
                  key: str | None = None) -> Future[Any]:
        """Run ``fn(*args)`` on engine ``slot`` (a DirectView of it); ``key`` is unused."""
        return EngineFuture(self.client[slot.key].apply_async(run_task, pack(fn, args, {})))

    def hard_stop(self, future: Future[Any], *, worker: str | None = None) -> str:
        """Kill, through its nanny, the engine that runs ``future``'s task; start another.

        See :func:`kale_ext.clusters._ipp_stop.kill_engine_of`.
        """
        return kill_engine_of(self, future, worker)

    # ---------------------------------------------------------------------- waiting
    def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
        """Block until ``n`` engines are registered; fail fast when a job or engine dies."""
        timeout = float(config.get("start-timeout", 120)) if timeout is None else timeout
        interval = float(config.get("job-check-interval", 0.5))
        deadline = time.monotonic() + timeout
        client = self.client
        next_check = 0.0
        while True:
            have = len(client.ids)
            if have >= n:
                return
            now = time.monotonic()
            if now >= next_check:  # ask the batch queue less often than the controller
                check_alive(self.id, self.kind, self._ipp, self.record.owner_host,
                            self.record.job_ids, n, have)
                next_check = now + interval
            if now >= deadline:
                jobs = jobs_text(self.kind, self.record.job_ids)
                raise ClusterError(
                    f"Cluster {self.id}: only {have} of {n} engines registered within "
                    f"{timeout:.0f} s. Batch jobs: {jobs or 'none'}. "
                    "Raise start_timeout or check the queue (kale status)."
                )
            time.sleep(0.05)

    # ----------------------------------------------------------------------- status
    def _engine_info(self, timeout: float = 2.0) -> dict[int, dict[str, Any]]:
        """Describe each engine once; an engine busy with a long task stays unknown."""
        client = self.client
        ids = client.ids
        self._info = {e: i for e, i in self._info.items() if e in ids}
        pending = {e: client[e].apply_async(describe) for e in ids if e not in self._info}
        deadline = time.monotonic() + timeout
        for eid, ar in pending.items():
            try:
                self._info[eid] = ar.get(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as e:
                logger.debug("engine %s did not describe itself: %s", eid, e)
        return dict(self._info)

    def n_workers(self) -> int:
        """Engines registered with the controller now."""
        return len(self.client.ids)

    def status(self) -> ClusterStatus:
        """Engines (host, cores, memory, job) and batch jobs with their states."""
        if (stopped := self.stopped_status()) is not None:
            return stopped
        jobs = []
        if self.kind != "local":
            jobs = [JobInfo(j, s, r) for j, (s, r) in
                    batch.job_states(self.kind, self.record.job_ids).items()]
        alive = registry.pid_alive(self.record.owner_pid, self.record.owner_host)
        if alive is False:
            return ClusterStatus(self.id, self.backend, self.kind, "unreachable",
                                 self.record.address, None, jobs=jobs,
                                 detail=f"controller pid {self.record.owner_pid} is gone")
        try:
            info = self._engine_info()
            ids = self.client.ids
        except Exception as e:
            return ClusterStatus(self.id, self.backend, self.kind, "unreachable",
                                 self.record.address, None, jobs=jobs, detail=str(e))
        workers = []
        for eid in ids:
            i = info.get(eid, {})
            workers.append(WorkerInfo(
                name=f"engine-{eid}", address=f"{i.get('host', '?')}:{i.get('pid', '?')}",
                host=i.get("host", "?"), cores=int(i.get("cores", 0)),
                memory=int(i.get("memory", 0)), job_id=i.get("job_id"),
            ))
        return ClusterStatus(self.id, self.backend, self.kind, "running", self.record.address,
                             None, workers=workers, jobs=jobs, idle=_ipp_idle.read(self.record))

    # ------------------------------------------------------------------------- stop
    def disconnect(self) -> None:
        """Close this process's client; the controller and engines keep running."""
        with self._lock:
            self._stop_adapting()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = self._view = None

    def stop(self) -> None:
        """Shut engines down, stop the controller, cancel batch jobs, drop the record."""
        with self._lock:
            self._stop_adapting()
            with contextlib.suppress(Exception):
                self._refresh()
            if self._client is not None or self._ipp.controller is not None:
                with contextlib.suppress(Exception):
                    self._shutdown_engines(list(self.client.ids), timeout=5)
            for set_id in list(self._ipp.engines):
                try:
                    self._stop_set(set_id)
                except Exception as e:
                    logger.info("stopping engine set %s: %s", set_id, e)
            if self._ipp.controller is not None:
                with contextlib.suppress(Exception):
                    self._loop.run(self._ipp.stop_controller(), timeout=60)
            if self.kind != "local":
                batch.cancel(self.kind, self.record.job_ids)
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = self._view = None
            self.record.forget()
