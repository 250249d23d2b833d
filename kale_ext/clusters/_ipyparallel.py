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

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import ipyparallel
import psutil

from kale_ext import config, registry
from kale_ext._errors import BatchJobError, ClusterError, ConfigError
from kale_ext.clusters import batch
from kale_ext.clusters._base import (
    Cluster,
    ClusterRecord,
    ClusterStatus,
    JobInfo,
    Slot,
    WorkerInfo,
)
from kale_ext.clusters._ipp_adapt import AdaptivePolicy, Adaptor, Decision, QueueSnapshot
from kale_ext.clusters._ipp_engine import EngineFuture, describe, pack, run_task, unpack
from kale_ext.clusters._ipp_launchers import ENGINE_LAUNCHERS, check_token, launcher_traits

logger = logging.getLogger(__name__)
T = TypeVar("T")

_KNOWN = frozenset({
    "workers", "engines_per_job", "cores", "memory", "walltime", "queue", "account", "qos",
    "constraint", "gpus_per_worker", "job_extra", "prologue", "interface_host", "profile",
    "start_timeout",
})
# Profile keys that only mean something to the Dask backend; profiles are shared.
_DASK_ONLY = frozenset({
    "processes", "threads_per_worker", "lifetime_margin", "scheduler_options",
    "worker_extra_args", "local_directory", "dashboard_address", "interface",
    "shared_temp_directory", "security", "python", "death_timeout", "nanny",
})

class _Loop:
    """One asyncio loop thread per process where every ipyparallel launcher lives.

    Launchers bind to the loop they start on; keeping them all on one thread works the
    same in a Jupyter kernel (whose own loop is running) and in a plain script.
    """

    _instance: _Loop | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="kale-ipp-loop", daemon=True).start()

    @classmethod
    def get(cls) -> _Loop:
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())


def _check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - _KNOWN - _DASK_ONLY
    if unknown:
        raise ConfigError(
            f"Unknown option(s) for backend='ipyparallel': {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(sorted(_KNOWN))}."
        )
    opts = {k: v for k, v in options.items() if k in _KNOWN and v is not None}
    per_job = opts.get("engines_per_job")
    if per_job is not None and (isinstance(per_job, bool) or not isinstance(per_job, int)
                                or per_job < 1):
        raise ConfigError(
            f"engines_per_job must be a positive integer (engines per batch job) or None "
            f"(all engines of a scale step in one job), but got engines_per_job={per_job!r}."
        )
    if opts.get("interface_host"):
        check_token("interface_host", opts["interface_host"])
    if kind != "local":
        launcher_traits(kind, opts)  # validate every value before anything starts
    return opts


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


def _tail(path: str | None, lines: int = 40) -> str:
    if not path:
        return ""
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return ""


class IPyParallelCluster(Cluster):
    """An ipyparallel cluster: a controller process and engines, local or in batch jobs.

    Build it with ``kale.start_cluster(kind, backend="ipyparallel", workers=n, ...)`` or
    reconnect with ``kale.connect(id)``. ``client`` is the ``ipyparallel.Client``,
    ``view`` a ``LoadBalancedView`` over all engines.
    """

    backend = "ipyparallel"

    def __init__(self, record: ClusterRecord, ipp_cluster: Any, loop: _Loop) -> None:
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
    def start(cls, kind: str, options: dict[str, Any]) -> IPyParallelCluster:
        opts = _check_options(kind, dict(options))
        workers = int(opts.pop("workers", 1))
        timeout = float(opts.pop("start_timeout", None) or config.get("start-timeout", 120))
        record = ClusterRecord(
            id=ClusterRecord.new_id(), backend=cls.backend, kind=kind, address="",
            profile=opts.pop("profile", None), options={**opts, "engine_sets": {}},
        )
        profile_dir = registry.private_dir("clusters", record.id) / "ipython"
        for folder in (profile_dir, profile_dir / "security"):
            folder.mkdir(exist_ok=True, mode=0o700)
        ip = opts.get("interface_host") or ("127.0.0.1" if kind == "local" else "*")
        loop = _Loop.get()
        ipp = loop.call(lambda: ipyparallel.Cluster(
            engines=ENGINE_LAUNCHERS[kind], controller="local", controller_ip=ip,
            cluster_id=record.id, profile_dir=str(profile_dir), cluster_file="",
            shutdown_atexit=False, load_profile=False, log=logger,
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
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    @classmethod
    def connect(cls, record: ClusterRecord) -> IPyParallelCluster:
        loop = _Loop.get()
        return cls(record, cls._load(record, loop), loop)

    @staticmethod
    def _load(record: ClusterRecord, loop: _Loop) -> Any:
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

    @property
    def _sets(self) -> dict[str, int]:
        sets: dict[str, int] = self.record.options.setdefault("engine_sets", {})
        return sets

    # ----------------------------------------------------------------------- scaling
    def _add_engines(self, n: int) -> None:
        per_job = self.record.options.get("engines_per_job") or n
        while n > 0:
            size = min(per_job, n)
            set_id = f"{int(time.time() * 1000)}-{len(self._ipp.engines)}"
            kwargs: dict[str, Any] = {
                "environment": {"KALE_ENGINE_SET": set_id, "KALE_CLUSTER_ID": self.id},
            }
            if self.kind != "local":
                kwargs.update(launcher_traits(self.kind, self.record.options))
                kwargs["batch_file_name"] = str(
                    Path(self.record.security or ".") / f"{self.kind}-engines-{set_id}.sh"
                )
            try:
                self._loop.run(self._ipp.start_engines(size, engine_set_id=set_id, **kwargs))
            except BaseException:
                self._ipp.engines.pop(set_id, None)
                raise
            self._sets[set_id] = size
            self._save()
            n -= size

    def scale(self, n: int) -> None:
        """Ask for ``n`` engines: add engine sets, or stop sets and shut engines down."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"scale needs a non-negative integer, but got n={n!r}.")
        self._stop_adapting()  # an explicit size ends adaptive scaling
        self._scale(Decision(n))

    def _scale(self, decision: Decision) -> None:
        with self._lock:
            self._refresh()
            requested = sum(self._sets.values())
            if decision.target > requested:
                self._add_engines(decision.target - requested)
            elif decision.target < requested:
                self._remove(requested - decision.target, prefer=decision.remove)

    def _members(self) -> dict[str, list[int]]:
        members: dict[str, list[int]] = {s: [] for s in self._sets}
        for eid, info in self._engine_info(timeout=3).items():
            members.setdefault(info["engine_set"], []).append(eid)
        return members

    def _remove(self, k: int, prefer: tuple[int, ...] = ()) -> None:
        members = self._members()
        preferred = set(prefer)
        # Sets whose engines are all idle go first, then the newest.
        order = sorted(
            self._sets,
            key=lambda s: (bool(members[s]) and set(members[s]) <= preferred, s),
            reverse=True,
        )
        for set_id in order:
            if k <= 0:
                break
            size = self._sets[set_id]
            ids = members.get(set_id, [])
            if size <= k:
                self._shutdown_engines(ids)
                self._stop_set(set_id)
                k -= size
            elif len(ids) >= k:
                victims = sorted(ids, key=lambda e: (e not in preferred, -e))[:k]
                self._shutdown_engines(victims)
                self._sets[set_id] = size - k
                k = 0
            else:  # its engines are not all known yet: replace the set by a smaller one
                self._shutdown_engines(ids)
                self._stop_set(set_id)
                self._add_engines(size - k)
                k = 0
            self._save()

    def _shutdown_engines(self, ids: list[int], timeout: float = 10) -> None:
        """Ask engines to exit cleanly and wait until the controller has let them go."""
        if not ids:
            return
        client = self.client
        client.shutdown(targets=ids, block=False)
        deadline = time.monotonic() + timeout
        while set(ids) & set(client.ids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for eid in ids:
            self._info.pop(eid, None)

    def _stop_set(self, set_id: str) -> None:
        es = self._ipp.engines.get(set_id)
        procs = [la.process for la in getattr(es, "launchers", {}).values() if la.process]
        if procs:  # local engines asked to shut down: let them exit before any SIGTERM
            psutil.wait_procs(procs, timeout=3)
        if set_id in self._ipp.engines:
            try:
                self._loop.run(self._ipp.stop_engines(set_id), timeout=120)
            except BatchJobError as e:  # the job had already ended
                logger.info("engine set %s: %s", set_id, e)
                self._ipp.engines.pop(set_id, None)
        self._sets.pop(set_id, None)

    def adapt(self, minimum: int, maximum: int, *, interval: float = 1.0,
              wait_count: int = 3) -> None:
        """Scale between ``minimum`` and ``maximum`` engines with the task queue.

        A background thread reads the controller's queue every ``interval`` seconds;
        it adds engines as soon as tasks wait and retires idle ones after
        ``wait_count`` quiet polls. ``scale()`` or ``stop()`` end adapting.
        """
        policy = AdaptivePolicy(minimum, maximum, wait_count=wait_count)
        self._stop_adapting()
        self._adaptor = Adaptor(policy, self._snapshot, self._scale, interval=interval)
        self._adaptor.start()

    def _stop_adapting(self) -> None:
        if self._adaptor is not None:
            self._adaptor.stop()
            self._adaptor = None

    def _snapshot(self) -> QueueSnapshot:
        with self._lock:
            ids = set(self.client.ids)
            queues = dict(self.client.queue_status())
            unassigned = int(queues.pop("unassigned", 0))
            # The controller keeps queues of engines that have left; count live ones only.
            queues = {e: q for e, q in queues.items() if e in ids}
            idle = tuple(sorted(e for e, q in queues.items() if not q["queue"] and not q["tasks"]))
            return QueueSnapshot(engines=len(queues), requested=sum(self._sets.values()),
                                 unassigned=unassigned, busy=len(queues) - len(idle),
                                 idle_engines=idle)

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
                self._check_alive(n, have)
                next_check = now + interval
            if now >= deadline:
                raise ClusterError(
                    f"Cluster {self.id}: only {have} of {n} engines registered within "
                    f"{timeout:.0f} s. Batch jobs: {self._jobs_text() or 'none'}. "
                    "Raise start_timeout or check the queue (kale status)."
                )
            time.sleep(0.05)

    def _jobs_text(self) -> str:
        if self.kind == "local":
            return ""
        states = batch.job_states(self.kind, self.record.job_ids)
        return ", ".join(f"{j} {s}{f' ({r})' if r else ''}" for j, (s, r) in states.items())

    def _check_alive(self, n: int, have: int) -> None:
        controller = self._ipp.controller
        pid = getattr(controller, "pid", -1)
        if pid > 0 and registry.pid_alive(pid, self.record.owner_host) is False:
            raise ClusterError(
                f"Cluster {self.id}: the ipyparallel controller (pid {pid}) exited. Its output:\n"
                f"{_tail(getattr(controller, 'output_file', None))}"
            )
        if self.kind == "local":
            for es in self._ipp.engines.values():
                for launcher in list(getattr(es, "launchers", {}).values()):
                    proc = launcher.process
                    if proc is not None and not proc.is_running():
                        raise ClusterError(
                            f"Cluster {self.id}: engine process {launcher.pid} exited before "
                            f"{n} engines registered ({have} did). Its output:\n"
                            f"{_tail(launcher.output_file)}"
                        )
            return
        system = batch.system(self.kind)
        by_job = {str(es.job_id): es for es in self._ipp.engines.values()}
        for job_id, job in system.job_states(self.record.job_ids).items():
            state, reason = job
            if system.is_ended(job) or system.is_ending(job) or system.is_hopeless(job):
                es = by_job.get(job_id)
                output = _tail(getattr(es, "output_file", None))
                raise BatchJobError(
                    f"Cluster {self.id}: {self.kind} job {job_id} is {state}"
                    f"{f' ({reason})' if reason else ''} while only {have} of {n} engines "
                    f"registered. Job output:\n{output or '(none)'}",
                    job_id=job_id, output=output,
                )

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
                             None, workers=workers, jobs=jobs)

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
