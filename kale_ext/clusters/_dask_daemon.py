"""The detached process that owns a Dask cluster and its scheduler.

``python -m kale_ext.clusters._dask_daemon <spec.json>`` runs a ``LocalCluster`` or
a dask-jobqueue cluster until it is told to stop. Kernels, the ``kale`` command line
and the Jupyter server are only clients, so the cluster outlives any of them.

Control goes through the scheduler itself: :class:`KalePlugin` adds the handlers
``kale_scale``, ``kale_adapt``, ``kale_jobs`` and ``kale_stop``, which any
``distributed.Client`` holding the cluster's TLS files can call
(``client.scheduler.kale_scale(n=3)``). One authenticated connection, no extra port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
from distributed.diagnostics.plugin import SchedulerPlugin

from kale_ext import registry
from kale_ext.clusters import _dask_jobs, _dask_tls, batch
from kale_ext.clusters._base import ClusterRecord
from kale_ext.clusters._dask_retire import Retirements
from kale_ext.clusters._idle import IdleClock, scheduler_activity, timeout_seconds, watch
from kale_ext.clusters._start_checks import tls_enabled

logger = logging.getLogger("kale_ext.clusters.dask_daemon")

ERROR_FILE = "daemon-error.txt"
HISTORY_S = 600  # how long status() still shows a job that ended


@dataclass
class JobEntry:
    worker: str  # the worker spec name (its processes are named <worker>-<i>)
    job_id: str | None
    error: str = ""
    ended: float | None = None


class JobBook:
    """Every batch job the cluster submitted, and why a submission failed."""

    def __init__(self) -> None:
        self.entries: list[JobEntry] = []
        self.record: ClusterRecord | None = None

    def active_ids(self) -> list[str]:
        return [e.job_id for e in self.entries if e.job_id and e.ended is None]

    def started(self, worker: str, job_id: str | None) -> None:
        self.entries.append(JobEntry(worker, job_id))
        self._save()

    def failed(self, worker: str, error: BaseException) -> None:
        text = str(error)
        # jobqueue's message wraps the command's stderr; keep the batch system's words.
        if "stderr:" in text:
            text = text.split("stderr:", 1)[1].strip() or text
        logger.error("job submission for %s failed: %s", worker, text)
        self.entries.append(JobEntry(worker, None, error=text, ended=time.time()))

    def closed(self, worker: str) -> None:
        for e in self.entries:
            if e.worker == worker and e.ended is None:
                e.ended = time.time()
        self._save()

    def _save(self) -> None:
        if self.record is not None:
            self.record.job_ids = self.active_ids()
            self.record.save()


def hooked_job_class(base: type[Any], book: JobBook) -> type[Any]:
    """Subclass ``base`` (a dask-jobqueue Job class) to report submissions and closes to ``book``.

    dask-jobqueue submits jobs in the background and only logs a rejected ``sbatch``;
    the book keeps the batch system's message so that starting clients can raise it.
    """
    from distributed.deploy.spec import ProcessInterface

    async def start(self: Any) -> None:
        try:
            await base.start(self)
        except Exception as e:
            book.failed(self.name, e)
            await ProcessInterface.start(self)  # keep the cluster's bookkeeping consistent
        else:
            book.started(self.name, self.job_id)

    async def close(self: Any) -> None:
        book.closed(self.name)
        await base.close(self)

    return type(f"Kale{base.__name__}", (base,), {"start": start, "close": close})


class KalePlugin(SchedulerPlugin):
    """Scheduler handlers through which clients control the cluster that owns it."""

    name = "kale"

    def __init__(self, cluster: Any, kind: str, book: JobBook, stop: asyncio.Event,
                 idle: IdleClock | None = None) -> None:
        self.cluster = cluster
        self.idle = idle
        self.kind = kind
        self.book = book
        self.stop_event = stop
        self.adaptive: dict[str, int] | None = None

    async def start(self, scheduler: Any) -> None:
        scheduler.handlers.update(
            kale_scale=self.scale, kale_adapt=self.adapt, kale_jobs=self.jobs,
            kale_stop=self.stop,
        )
        self.retirements = Retirements(self.cluster, scheduler)
        self.retirements.install()
        self._replacer = asyncio.create_task(self._replace_lost_workers())

    async def close(self) -> None:
        self._replacer.cancel()

    async def _replace_lost_workers(self) -> None:
        """Resubmit jobs of an adaptive cluster whose workers retired or died.

        A worker that reaches its ``--lifetime`` (or whose job ended) leaves the cluster's
        workers but stays in its plan, so ``Adaptive`` sees nothing to do; correcting the
        cluster's state submits a job for every planned worker that is missing. Workers
        that retired at their lifetime are replaced whatever the cluster's size policy.
        """
        while True:
            await asyncio.sleep(1)
            try:
                await self.retirements.replace()
            except Exception as e:
                logger.warning("replacing retired workers failed: %s", e)
            spec = getattr(self.cluster, "worker_spec", {}) or {}
            if self.adaptive and set(spec) - set(self.cluster.workers):
                try:
                    await self.cluster._correct_state()
                except Exception as e:
                    logger.warning("replacing lost workers failed: %s", e)

    def _stop_adaptive(self) -> None:
        adaptive = getattr(self.cluster, "_adaptive", None)
        if adaptive is not None:
            adaptive.stop()
        self.adaptive = None

    async def scale(self, n: int, **_: Any) -> dict[str, Any]:
        self._stop_adaptive()
        self.cluster.scale(int(n))
        return {"requested": int(n)}

    async def adapt(self, minimum: int, maximum: int, **_: Any) -> dict[str, Any]:
        self._stop_adaptive()
        self.cluster.adapt(minimum=int(minimum), maximum=int(maximum))
        self.adaptive = {"minimum": int(minimum), "maximum": int(maximum)}
        return self.adaptive

    async def jobs(self, states: bool = True, **_: Any) -> dict[str, Any]:
        """Jobs, submission errors, requested size; ``states=False`` skips the queue query."""
        now = time.time()
        shown = [e for e in self.book.entries
                 if e.job_id and (e.ended is None or now - e.ended < HISTORY_S)]
        queue: dict[str, batch.JobState] = {}
        if states and shown and self.kind != "local":
            try:
                queue = await asyncio.to_thread(
                    batch.job_states, self.kind, [str(e.job_id) for e in shown])
            except Exception as e:  # the queue may be briefly unreachable
                logger.warning("job state query failed: %s", e)
        return {
            "jobs": [{"job_id": e.job_id, "worker": e.worker, "active": e.ended is None,
                      "state": queue.get(str(e.job_id), ("UNKNOWN", ""))[0],
                      "reason": queue.get(str(e.job_id), ("", ""))[1]} for e in shown],
            "errors": [{"worker": e.worker, "error": e.error} for e in self.book.entries
                       if e.error],
            "requested": len(getattr(self.cluster, "worker_spec", {}) or {}),
            "adaptive": self.adaptive,
            "idle": self.idle.to_dict(now) if self.idle is not None else None,
            "replaced": self.retirements.replaced,
            "pid": os.getpid(),
        }

    async def stop(self, **_: Any) -> dict[str, Any]:
        # Answer first: closing the cluster takes the scheduler (and this comm) down.
        asyncio.get_running_loop().call_later(0.05, self.stop_event.set)
        return {"job_ids": self.book.active_ids()}


async def _make_cluster(cluster_id: str, kind: str, options: dict[str, Any],
                        security: Any, book: JobBook) -> Any:
    host = options.get("interface_host")
    # The dashboard listens where the scheduler does (loopback for a local cluster), never
    # on every interface, and with TLS only for a client holding the cluster's certificate.
    dashboard = _dask_tls.dashboard_address(kind, options)
    folder = registry.private_dir("clusters", cluster_id)
    scheduler_cls = _dask_tls.dashboard_scheduler(folder) if security is not None else None
    protocol = "tls://" if security is not None else "tcp://"
    n = int(options.get("workers") or 0)
    if kind == "local":
        from distributed import LocalCluster

        memory = options.get("memory") or "auto"
        # This process holds one cluster: its nannies hand this config to their workers.
        dask.config.set(_dask_jobs.NO_WORKER_PAGES)
        local = LocalCluster(
            n_workers=n, threads_per_worker=int(options.get("threads_per_worker") or 1),
            processes=True, memory_limit=memory, host=host or "127.0.0.1",
            protocol=protocol, security=security, dashboard_address=dashboard,
            asynchronous=True, name=cluster_id,
            # workers spill task data there: in the cluster's 0700 folder, not /tmp's
            local_directory=str(registry.private_folder(folder / "workers")),
        )
        if scheduler_cls is not None:  # not started yet (asynchronous): its scheduler's class
            local.scheduler_spec["cls"] = scheduler_cls
        return await local
    base = _dask_jobs.cluster_class(kind)
    kwargs = _dask_jobs.job_kwargs(kind, options, cluster_id=cluster_id)
    scheduler_options: dict[str, Any] = {"dashboard_address": dashboard}
    if host:
        scheduler_options["host"] = host
    if scheduler_cls is not None:
        kwargs["scheduler_cls"] = scheduler_cls
    return await base(
        n_workers=n, job_cls=hooked_job_class(base.job_cls, book), asynchronous=True,
        security=security, protocol=protocol, scheduler_options=scheduler_options,
        shared_temp_directory=os.getcwd(), name=cluster_id, **kwargs,
    )


async def serve(spec: dict[str, Any]) -> None:
    """Run the cluster of ``spec`` until a client calls ``kale_stop`` or SIGTERM comes."""
    cluster_id, kind, options = spec["id"], spec["kind"], spec["options"]
    folder = registry.private_dir("clusters", cluster_id)
    security = _dask_tls.security(folder) if tls_enabled(options) else None
    book = JobBook()
    idle = IdleClock(timeout_seconds(options))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    cluster = await _make_cluster(cluster_id, kind, options, security, book)
    try:
        await cluster.scheduler.register_scheduler_plugin(
            KalePlugin(cluster, kind, book, stop, idle), idempotent=False)
        record = ClusterRecord(
            id=cluster_id, backend="dask", kind=kind, address=cluster.scheduler.address,
            dashboard=_dask_tls.dashboard_link(cluster.scheduler, tls=security is not None),
            job_ids=book.active_ids(),
            security=str(folder) if security is not None else None,
            profile=options.get("profile"), options=options,
        )
        book.record = record
        record.save()
        logger.info("cluster %s up at %s", cluster_id, record.address)
        # An idle cluster (no client, no task) stops itself after its idle timeout.
        watcher = asyncio.create_task(
            watch(idle, lambda: scheduler_activity(cluster.scheduler), stop.set))
        await stop.wait()
        watcher.cancel()
        logger.info("stopping cluster %s", cluster_id)
    finally:
        book.record = None
        try:
            await asyncio.wait_for(cluster.close(), timeout=60)
        finally:
            # Jobs jobqueue could not cancel (its scheduler already gone) are cancelled here.
            if kind != "local":
                with contextlib.suppress(Exception):
                    batch.cancel(kind, book.active_ids())
            registry.remove("clusters", cluster_id)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kale_ext.clusters._dask_daemon SPEC.json", file=sys.stderr)
        return 2
    spec_path = Path(args[0])
    spec = json.loads(spec_path.read_text())
    dask.config.set({"kale.state-dir": spec["state_dir"]})
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(spec))
    except Exception as e:
        logger.exception("cluster %s failed", spec["id"])
        chain: list[str] = []
        cause: BaseException | None = e
        while cause is not None and len(chain) < 5:  # the root cause says the most
            chain.append(f"{type(cause).__name__}: {cause}")
            cause = cause.__cause__ or cause.__context__
        (spec_path.parent / ERROR_FILE).write_text("\n  caused by ".join(chain))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
