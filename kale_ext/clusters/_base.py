"""The one Cluster interface that every backend implements, and its serialisable shapes."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from kale_ext import channel, config, registry, views
from kale_ext._errors import ClusterError
from kale_ext.clusters import batch
from kale_ext.clusters._lifetimes import Lifetimes

# A cluster runs on this machine or on a registered batch system.
KINDS = ("local", *batch.names())


@dataclass
class ClusterRecord:
    """What the registry keeps of a started cluster: enough to reconnect and to stop it."""

    id: str
    backend: str
    kind: str
    address: str  # dask scheduler address, or ipyparallel cluster file path
    dashboard: str | None = None
    job_ids: list[str] = field(default_factory=list)
    security: str | None = None  # folder holding TLS certificates / connection files
    owner_pid: int = field(default_factory=os.getpid)
    owner_host: str = field(default_factory=socket.gethostname)
    user: str = field(default_factory=getpass.getuser)
    created: float = field(default_factory=time.time)
    profile: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # Set by forget() in this process; never saved.
    forgotten: bool = field(default=False, repr=False, compare=False)

    @staticmethod
    def new_id() -> str:
        return f"kc-{uuid.uuid4().hex[:8]}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["forgotten"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterRecord:
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self) -> None:
        registry.write("clusters", self.id, self.to_dict())

    def forget(self) -> None:
        """Drop the record and its private folder.

        The folder holds the cluster's keys: nothing may connect once it is gone. The
        owner (the Dask daemon or the ipyparallel controller) leads a process group of its
        own; when it died on this host without cleaning up, what is left of its group
        (workers, schedulers) is ended too.
        """
        if registry.pid_alive(self.owner_pid, self.owner_host) is False:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.owner_pid, signal.SIGTERM)
        registry.remove("clusters", self.id)
        shutil.rmtree(registry.kind_dir("clusters") / self.id, ignore_errors=True)
        self.forgotten = True


class WorkerRetired(ClusterError):
    """A task's worker left the cluster on purpose while the task ran.

    The task was not re-run.

    A batch worker retires shortly before its job's walltime (its lifetime), and its
    place goes to a new job. Nothing went wrong with the task: run it again as new.
    """


@dataclass
class JobInfo:
    job_id: str
    state: str  # the batch system's own word: PENDING, RUNNING, CANCELLED, GONE, ...
    reason: str = ""


@dataclass
class WorkerInfo:
    name: str
    address: str
    host: str
    cores: int
    memory: int  # bytes; 0 when unknown
    job_id: str | None = None


@dataclass(frozen=True)
class Slot:
    """One worker of a cluster, as placement sees it.

    ``key`` is what the backend addresses the worker by (a Dask worker address, an
    ipyparallel engine id); ``name`` is what people read; ``busy`` says whether the
    worker ran or queued a task when the slots were listed.
    """

    key: str | int
    name: str
    busy: bool = False


@dataclass
class ClusterStatus:
    id: str
    backend: str
    kind: str
    state: str  # running | unreachable | stopped
    address: str
    dashboard: str | None
    workers: list[WorkerInfo] = field(default_factory=list)
    jobs: list[JobInfo] = field(default_factory=list)
    detail: str = ""
    # The idle clock (kale_ext.clusters._idle): timeout, idle_for and left, in seconds;
    # None where the backend keeps none.
    idle: dict[str, float | None] | None = None

    @property
    def cores(self) -> int:
        return sum(w.cores for w in self.workers)

    @property
    def memory(self) -> int:
        return sum(w.memory for w in self.workers)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(cores=self.cores, memory=self.memory, n_workers=len(self.workers))
        return data


class NativeFuture(Future[Any]):
    """A ``concurrent.futures.Future`` mirroring a backend's own future (``native``).

    Subclasses say how to read the native result and how to cancel the native task;
    this class keeps the two in step, whichever finishes or is cancelled first.
    """

    def __init__(self, native: Any) -> None:
        super().__init__()
        self.native = native
        native.add_done_callback(lambda _: self._settle())

    @abstractmethod
    def _native_result(self) -> Any:
        """Return the native future's result; raise its exception (CancelledError if cancelled)."""

    @abstractmethod
    def _cancel_native(self) -> None: ...

    def _settle(self) -> None:
        if self.done():
            return
        try:
            value = self._native_result()
        except CancelledError:
            if super().cancel():
                self.set_running_or_notify_cancel()
        except BaseException as e:
            with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                self.set_exception(e)
        else:
            with contextlib.suppress(InvalidStateError):
                self.set_result(value)

    def cancel(self) -> bool:
        if self.done():
            return False
        # Already finished, or the scheduler/controller is gone: cancel here all the same.
        with contextlib.suppress(Exception):
            self._cancel_native()
        return super().cancel()


class Cluster(ABC, Lifetimes):
    """A running Dask or ipyparallel cluster, local or on a batch queue.

    Backends subclass this; ``kale.start_cluster`` and ``kale.connect`` build them.
    """

    backend: ClassVar[str]

    def __init__(self, record: ClusterRecord) -> None:
        self.record = record

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def kind(self) -> str:
        return self.record.kind

    @classmethod
    def check(cls, kind: str, options: dict[str, Any]) -> None:
        """Check the options of a start of ``kind``; start nothing, ask no batch queue.

        Raise :class:`~kale_ext._errors.ConfigError` naming the option, its value and
        the rule. ``start_cluster`` calls it before :meth:`start`.
        """

    @classmethod
    @abstractmethod
    def start(cls, kind: str, options: dict[str, Any]) -> Cluster:
        """Start a cluster of ``kind`` with resolved profile ``options``; wait for workers."""

    @classmethod
    @abstractmethod
    def connect(cls, record: ClusterRecord) -> Cluster:
        """Reconnect to a running cluster from its registry record."""

    @property
    @abstractmethod
    def client(self) -> Any:
        """The native client: ``distributed.Client`` or ``ipyparallel.Client``."""

    @abstractmethod
    def scale(self, n: int) -> None:
        """Ask for ``n`` workers (engines)."""

    @abstractmethod
    def adapt(self, minimum: int, maximum: int) -> None:
        """Scale between ``minimum`` and ``maximum`` workers with the load."""

    @abstractmethod
    def stop(self) -> None:
        """Stop workers and scheduler/controller, cancel batch jobs, drop the record."""

    @abstractmethod
    def status(self) -> ClusterStatus:
        """Live workers, batch jobs with their states, dashboard link."""

    def stopped_status(self) -> ClusterStatus | None:
        """Return a "stopped" status once the cluster was stopped, here or elsewhere.

        Stopped elsewhere: its owner (daemon or controller) is gone and so is its record.
        """
        r = self.record
        if not r.forgotten and not (registry.pid_alive(r.owner_pid, r.owner_host) is False
                                    and registry.read("clusters", r.id) is None):
            return None
        return ClusterStatus(r.id, r.backend, r.kind, "stopped", r.address, None,
                             detail="stopped; start another with kale.start_cluster")

    @abstractmethod
    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on some worker; a ``concurrent.futures.Future``."""

    def submit_many(self, fn: Callable[..., Any],
                    calls: Sequence[Sequence[Any]]) -> list[Future[Any]]:
        """Run ``fn(*args)`` for each ``args`` of ``calls``; one future each, in order.

        Backends that can send many tasks in one message override this.
        """
        return [self.submit(fn, *args) for args in calls]

    def n_workers(self) -> int:
        """Workers connected now; backends override this with a cheaper query."""
        return len(self.status().workers)

    @abstractmethod
    def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
        """Block until ``n`` workers are connected; raise with the batch system's words."""

    @abstractmethod
    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """Run ``fn(*args)`` once on every worker; results by worker name."""

    # -- placement: what training and search ask of any backend ----------------------
    @abstractmethod
    def slots(self) -> list[Slot]:
        """Every connected worker, in a stable order, each saying whether it is busy."""

    @abstractmethod
    def submit_to(self, slot: Slot, fn: Callable[..., Any], *args: Any,
                  key: str | None = None) -> Future[Any]:
        """Run ``fn(*args)`` on exactly the worker ``slot``, never elsewhere.

        Parameters
        ----------
        slot
            A worker from :meth:`slots`.
        fn, args
            The function and its positional arguments.
        key
            A name for the task where the backend shows task names (its dashboard).

        Returns
        -------
        concurrent.futures.Future
            Settles with ``fn``'s result or exception; fails when the worker is lost.
        """

    def channel_host(self) -> str:
        """Return the address this host's metric channel should listen on for this cluster.

        ``kale.channel-host`` wins; otherwise the address the cluster's scheduler or
        controller listens on, which its workers already reach; otherwise loopback for
        a local cluster and :func:`kale_ext.channel.channel_host`'s choice for others.
        """
        if config.get("channel-host"):
            return channel.channel_host()
        listening = self.record.options.get("interface_host")
        if listening and listening not in ("*", "0.0.0.0"):
            return str(listening)
        return channel.channel_host(local=self.kind == "local")

    def hard_stop(self, future: Future[Any], *, worker: str | None = None) -> str:
        """End the worker process that runs ``future``'s task, whatever the task is doing.

        For a task that does not end when asked (stuck in a long C call, deadlocked): the
        process is killed, and the backend restarts or replaces the worker, so the cluster
        keeps its size. The task's future fails as for a lost worker. Any other task
        running in the same process (a worker with several threads) ends with it and
        fails the same way.

        Parameters
        ----------
        future
            A future from this cluster's :meth:`submit` or :meth:`submit_to`, cancelled
            or not.
        worker
            The worker's name as the task reported it
            (:func:`kale_ext.trial.worker_name`): where to look when the backend no
            longer knows where the task runs (its future was cancelled).

        Returns
        -------
        str
            What was ended and what took its place, for the log.

        Raises
        ------
        ClusterError
            When this backend cannot end a running task, or finds no worker running it.
        """
        raise ClusterError(
            f"Cluster {self.id}: the {self.backend} backend cannot end a running task from "
            "outside. Let the trial call kale.report() often enough to hear its stop, or run "
            "it on a dask or ipyparallel cluster, whose worker processes can be ended.")

    def disable_task_retries(self) -> None:
        """Stop the backend from re-running a task whose worker died.

        kale retries trials and restarts runs itself (as new attempts, their reports
        kept apart); a backend that silently reruns a lost task would double them up.
        """

    def disconnect(self) -> None:
        """Drop this process's connection; the cluster keeps running."""

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} kind={self.kind} address={self.record.address}>"

    def _ipython_display_(self) -> None:
        """Show the registered ``cluster`` view, else the HTML status.

        kale's own view is its live widget (status, scale, stop).
        """
        from IPython.display import HTML, display

        try:
            factory = views.view_factory("cluster")
            widget = factory(self) if factory is not None else None
        except Exception:  # no widget packages (KaleError names them) or no front end
            widget = None
        if widget is None:
            display(HTML(self._repr_html_()))
            return
        widget._ipython_display_()

    def _repr_html_(self) -> str:
        from kale_ext.clusters._repr import status_html

        return status_html(self.status())
