"""The Dask backend: a client of the cluster that :mod:`._dask_daemon` owns.

``DaskCluster.start`` writes TLS files and a spec into the cluster's private registry
folder, starts the daemon detached (its own session, so a kernel restart does not
kill it), waits for the daemon's registry record and then for the workers, raising
the batch system's own message when a job is rejected or dies first.

Every cluster, local ones included, speaks TLS with ``require_encryption``: one code
path, and on a shared login node other users cannot reach a local scheduler either.
Plain TCP (for a site whose workers cannot read the state directory) takes the
explicit ``tls: off-i-know`` in a profile or ``tls="off-i-know"``: it logs a warning,
and such a scheduler never listens on every interface (see :mod:`._start_checks`).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any, ClassVar

from kale_ext import config, registry
from kale_ext._errors import BatchJobError, ClusterError
from kale_ext.clusters import _daemon_start, _dask_jobs, _dask_tls, _network, _start_checks, batch
from kale_ext.clusters._base import (
    Cluster,
    ClusterRecord,
    ClusterStatus,
    JobInfo,
    NativeFuture,
    Slot,
    WorkerInfo,
)
from kale_ext.clusters._dask_daemon import ERROR_FILE
from kale_ext.clusters._dask_lifetimes import DaskLifetimes
from kale_ext.clusters._dask_stop import restart_worker_of

logger = logging.getLogger(__name__)



def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip()
    except OSError:
        return ""


class DaskFuture(NativeFuture):
    """A ``concurrent.futures.Future`` mirroring a ``distributed.Future``.

    ``cancel()`` cancels the Dask task too; ``dask_future`` is the native one.
    """

    @property
    def dask_future(self) -> Any:
        return self.native

    def _native_result(self) -> Any:
        if self.native.status == "cancelled":
            raise CancelledError
        return self.native.result()

    def _cancel_native(self) -> None:
        self.native.cancel()


class DaskCluster(DaskLifetimes, Cluster):
    """A Dask cluster (local or dask-jobqueue) run by a detached daemon process."""

    backend: ClassVar[str] = "dask"
    _daemons: ClassVar[dict[str, subprocess.Popen[bytes]]] = {}

    def __init__(self, record: ClusterRecord, client: Any) -> None:
        super().__init__(record)
        self._client = client

    # -- starting and connecting -------------------------------------------------
    @classmethod
    def check(cls, kind: str, options: dict[str, Any]) -> None:
        """Check every option of a start of ``kind``; start nothing, ask no queue."""
        _dask_jobs.check(kind, options)

    @classmethod
    def start(cls, kind: str, options: dict[str, Any]) -> DaskCluster:
        cluster_id = ClusterRecord.new_id()
        nodes: list[str] = []
        cls.check(kind, options)  # fail fast, here
        tls = _start_checks.tls_enabled(options, warn=True)
        if kind != "local":
            # The scheduler listens where the compute nodes reach this host, not on
            # whatever address Dask would guess (loopback, or the default route's).
            nodes = _network.node_addresses(kind, options)
            options = {**options,
                       "interface_host": _network.contact_host(kind, options, nodes)}
        if not tls:
            _start_checks.check_plaintext_host(options.get("interface_host") or "127.0.0.1")
        folder = registry.private_dir("clusters", cluster_id)
        if tls:
            _dask_jobs.check_safe_path("state directory", folder)
            ips, names = _network.certificate_hosts(
                str(options.get("interface_host") or "127.0.0.1"), nodes)
            _dask_tls.create_credentials(folder, ips=ips, names=names)
        timeout = float(config.get("start-timeout", 120))
        proc = cls._spawn(cluster_id, kind, options, folder)
        record = cls._wait_for_record(cluster_id, proc, folder, timeout)
        cluster = cls.connect(record)
        try:
            cluster.wait_for_workers(int(options.get("workers") or 0), timeout=timeout)
        except BaseException:
            cluster.stop()
            raise
        _daemon_start.prepare()  # the next start forks its daemon from a helper
        return cluster

    @classmethod
    def _spawn(cls, cluster_id: str, kind: str, options: dict[str, Any],
               folder: Path) -> subprocess.Popen[bytes]:
        spec = {"id": cluster_id, "kind": kind, "options": options,
                "state_dir": str(config.state_dir())}
        spec_path = folder / "spec.json"
        spec_fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(spec_fd, "w") as f:
            json.dump(spec, f)
        jobs_dir = folder / "jobs"  # the daemon's cwd: batch jobs write their output here
        jobs_dir.mkdir(exist_ok=True, mode=0o700)
        log_fd = os.open(folder / "daemon.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # kale.daemon-prefix: a launcher put in front of the daemon's command, e.g. one
        # submitting it as a batch job of its own (deploy/jupyterhub/kale-daemon-job).
        prefix = config.get("daemon-prefix") or []
        prefix = shlex.split(prefix) if isinstance(prefix, str) else [str(p) for p in prefix]
        with os.fdopen(log_fd, "ab") as log:
            # Forked by the helper that imported Dask once, when one runs (light start).
            proc = _daemon_start.spawn_forked(spec_path, jobs_dir, log.fileno())
            if proc is None:
                proc = subprocess.Popen(
                    [*prefix, sys.executable, "-m", "kale_ext.clusters._dask_daemon",
                     str(spec_path)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=jobs_dir, start_new_session=True, close_fds=True,
                )
        cls._daemons[cluster_id] = proc
        # Reap the daemon when it exits so that its pid does not linger as a zombie.
        threading.Thread(target=proc.wait, daemon=True, name=f"kale-reap-{cluster_id}").start()
        return proc

    @staticmethod
    def _wait_for_record(cluster_id: str, proc: subprocess.Popen[bytes], folder: Path,
                         timeout: float) -> ClusterRecord:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = registry.read("clusters", cluster_id)
            if data is not None:
                return ClusterRecord.from_dict(data)
            if proc.poll() is not None:
                why = _tail(folder / ERROR_FILE) or _tail(folder / "daemon.log")
                raise ClusterError(
                    f"The Dask cluster daemon of {cluster_id} exited with code "
                    f"{proc.returncode} before its scheduler came up:\n{why}\n"
                    f"Options: {json.loads((folder / 'spec.json').read_text())['options']}\n"
                    f"Full log: {folder / 'daemon.log'}"
                )
            time.sleep(0.02)
        proc.terminate()
        raise ClusterError(f"The Dask scheduler of {cluster_id} did not come up within "
                           f"{timeout:.0f} s; see {folder / 'daemon.log'}.")

    @classmethod
    def connect(cls, record: ClusterRecord) -> DaskCluster:
        from distributed import Client

        if registry.pid_alive(record.owner_pid, record.owner_host) is False:
            raise ClusterError(
                f"The daemon (pid {record.owner_pid}) that ran cluster {record.id} has exited; "
                f"nothing is left to connect to. Clean up with kale.stop({record.id!r})."
            )
        security = _dask_tls.security(record.security) if record.security else None
        try:
            client = Client(record.address, security=security, timeout=10,
                            set_as_default=False)
        except OSError as e:
            raise ClusterError(
                f"Cannot reach the scheduler of cluster {record.id} at {record.address}: {e}. "
                f"If it is gone, remove it with kale.stop({record.id!r})."
            ) from e
        return cls(record, client)

    # -- control through the daemon's scheduler handlers ---------------------------
    @property
    def client(self) -> Any:
        """The ``distributed.Client`` connected to this cluster's scheduler."""
        return self._client

    def _call(self, op: str, **kwargs: Any) -> Any:
        return self._client.sync(getattr(self._client.scheduler, op), **kwargs)

    def scale(self, n: int) -> None:
        self._call("kale_scale", n=int(n))

    def adapt(self, minimum: int, maximum: int) -> None:
        if not 0 <= minimum <= maximum:
            raise ClusterError(f"adapt needs 0 <= minimum <= maximum, but got "
                               f"minimum={minimum}, maximum={maximum}.")
        self._call("kale_adapt", minimum=int(minimum), maximum=int(maximum))

    def jobs(self, *, states: bool = True) -> dict[str, Any]:
        """Return the daemon's view: jobs with batch states, submission errors, requested size.

        ``states=False`` leaves out the batch system's query (state ``UNKNOWN``).
        """
        return dict(self._call("kale_jobs", states=states))

    def stop(self) -> None:
        record = self.record
        try:
            job_ids = list(self._call("kale_stop").get("job_ids", []))
        except Exception:  # daemon gone or unreachable: clean up what the record names
            job_ids = list(record.job_ids)
        finally:
            self._client.close(timeout=5)
        self._wait_for_daemon_exit(timeout=90)
        if record.kind != "local" and job_ids:
            system = batch.system(record.kind)
            states = system.job_states(job_ids)
            system.cancel([j for j, job in states.items() if not system.is_ended(job)])
        record.forget()

    def _wait_for_daemon_exit(self, timeout: float) -> None:
        proc = self._daemons.pop(self.id, None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return
            elif not registry.pid_alive(self.record.owner_pid, self.record.owner_host):
                return
            time.sleep(0.1)

    # -- status and work -----------------------------------------------------------
    def status(self) -> ClusterStatus:
        r = self.record
        if (stopped := self.stopped_status()) is not None:
            return stopped
        try:
            info = self._client.sync(self._client.scheduler.identity, n_workers=-1)
            jobs = self.jobs()
        except Exception as e:
            return ClusterStatus(r.id, r.backend, r.kind, "unreachable", r.address,
                                 r.dashboard, detail=str(e))
        by_worker = {j["worker"]: j["job_id"] for j in jobs["jobs"] if j["active"]}
        workers = []
        for addr, w in sorted(info.get("workers", {}).items()):
            name = str(w.get("name", addr))
            job = next((jid for spec, jid in by_worker.items()
                        if name == spec or name.startswith(f"{spec}-")), None)
            workers.append(WorkerInfo(name, addr, str(w.get("host", "")),
                                      int(w.get("nthreads", 0)), int(w.get("memory_limit") or 0),
                                      job))
        detail = "; ".join(e["error"] for e in jobs["errors"])
        if jobs.get("adaptive"):
            detail = (f"adaptive {jobs['adaptive']['minimum']}..{jobs['adaptive']['maximum']}"
                      + (f"; {detail}" if detail else ""))
        return ClusterStatus(
            r.id, r.backend, r.kind, "running", r.address, r.dashboard, workers,
            [JobInfo(str(j["job_id"]), j["state"],
                     j["reason"] if j["active"] else "retired by the cluster")
             for j in jobs["jobs"]],
            detail, idle=jobs.get("idle"),
        )

    def n_workers(self) -> int:
        """Workers connected to the scheduler now."""
        return len(self._client.sync(self._client.scheduler.ncores))

    def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
        timeout = float(config.get("start-timeout", 120) if timeout is None else timeout)
        interval = float(config.get("job-check-interval", 0.5))
        deadline = time.monotonic() + timeout
        next_queue_check = 0.0
        while True:
            if self.n_workers() >= n:
                return
            # Rejected submissions are known to the daemon at once; asking the queue
            # about job states costs a squeue, so that happens every `interval` only.
            now = time.monotonic()
            jobs = self.jobs(states=now >= next_queue_check)
            if now >= next_queue_check:
                next_queue_check = now + interval
            self._raise_for_jobs(jobs)
            if now > deadline:
                states = ", ".join(f"{j['job_id']} {j['state']} {j['reason']}".strip()
                                   for j in jobs["jobs"] if j["active"]) or "none"
                raise ClusterError(
                    f"Cluster {self.id} has {self.n_workers()} of {n} workers after "
                    f"{timeout:.0f} s. Jobs: {states}. Raise kale.start-timeout or check the "
                    "queue (a PENDING reason such as Resources or Priority means waiting)."
                )
            time.sleep(0.05)

    def _raise_for_jobs(self, jobs: dict[str, Any]) -> None:
        """Raise BatchJobError for a rejected submission or a job that ended early."""
        for err in jobs["errors"]:
            raise BatchJobError(
                f"The batch system rejected the job of worker {err['worker']} of cluster "
                f"{self.id}:\n{err['error']}\nFix the option it names (queue, account, "
                "walltime, memory, ...) in the profile or keywords.",
                output=err["error"],
            )
        system = batch.system(self.kind) if self.kind != "local" else None
        for job in jobs["jobs"]:
            state = batch.JobState(job["state"], job["reason"])
            if not (system and job["active"]):
                continue
            if system.is_ended(state):
                output = self._job_output(str(job["job_id"]))
                raise BatchJobError(
                    f"Batch job {job['job_id']} of cluster {self.id} ended "
                    f"({job['state']} {job['reason']}".strip() + ") before its workers "
                    f"connected. Its output:\n{output or '(none)'}",
                    job_id=str(job["job_id"]), output=output,
                )
            if system.is_hopeless(state):
                raise BatchJobError(
                    f"Batch job {job['job_id']} of cluster {self.id} will never start: "
                    f"{self.kind} says {job['state']} {job['reason']}. "
                    f"{system.explain(state)}",
                    job_id=str(job["job_id"]), output=f"{job['state']} {job['reason']}",
                )

    def _job_output(self, job_id: str) -> str:
        folder = Path(self.record.security or registry.private_dir("clusters", self.id)) / "jobs"
        return "\n".join(_tail(p) for p in sorted(folder.glob(f"*{job_id}*")))

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a worker; a ``concurrent.futures.Future``.

        Keywords go to ``fn``; pure=False so that repeated calls run again.
        """
        return DaskFuture(self._client.submit(fn, *args, pure=False, **kwargs))

    def submit_many(self, fn: Callable[..., Any],
                    calls: Sequence[Sequence[Any]]) -> list[Future[Any]]:
        """Submit every call in one message to the scheduler (``Client.map``)."""
        if not calls:
            return []
        columns = [list(column) for column in zip(*calls, strict=True)]
        return [DaskFuture(f) for f in self._client.map(fn, *columns, pure=False)]

    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        by_addr = self._client.run(fn, *args)
        names = {a: str(w.get("name", a)) for a, w in
                 self._client.sync(self._client.scheduler.identity,
                                   n_workers=-1)["workers"].items()}
        return {names.get(a, a): v for a, v in by_addr.items()}

    # -- placement -------------------------------------------------------------------
    def slots(self) -> list[Slot]:
        """Every connected worker by address; busy when the scheduler has tasks on it."""
        info = self._client.scheduler_info(n_workers=-1)["workers"]
        busy = {addr for addr, keys in self._client.processing().items() if keys}
        return [Slot(addr, str(w.get("name", addr)), addr in busy)
                for addr, w in sorted(info.items())]

    def submit_to(self, slot: Slot, fn: Callable[..., Any], *args: Any,
                  key: str | None = None) -> Future[Any]:
        """Run ``fn(*args)`` on the worker ``slot`` only (``allow_other_workers=False``)."""
        kwargs: dict[str, Any] = {"key": key} if key else {}
        return DaskFuture(self._client.submit(fn, *args, workers=[slot.key],
                                              allow_other_workers=False, pure=False, **kwargs))

    def hard_stop(self, future: Future[Any], *, worker: str | None = None) -> str:
        """Kill, through its nanny, the worker process that runs ``future``'s task.

        See :func:`kale_ext.clusters._dask_stop.restart_worker_of`.
        """
        return restart_worker_of(self._client, self.id, future, worker)

    def disable_task_retries(self) -> None:
        """Set the scheduler's ``allowed_failures`` to 0: a lost task fails at once."""

        def no_retries(dask_scheduler: Any) -> None:
            dask_scheduler.allowed_failures = 0

        try:
            self._client.run_on_scheduler(no_retries)
        except Exception as e:  # a scheduler that refuses still runs tasks; retries double up
            logger.warning("could not turn off Dask's task rescheduling: %s", e)

    def disconnect(self) -> None:
        """Drop this process's connection; the cluster keeps running."""
        self._client.close(timeout=5)
