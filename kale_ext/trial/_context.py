"""The running trial's context: what a trial (or one rank of it) knows about itself."""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

WORKER_NAME_ENV = "KALE_WORKER_NAME"
"""Environment variable naming the worker a trial runs on, for processes a launcher
started itself (the ranks of a distributed run, a plain ``srun`` job)."""


class ReportClient(Protocol):
    """What a trial needs of its end of the metric channel.

    That is to send a message and read the driver's reply; a
    :class:`kale_ext.channel.ChannelClient` is one.
    """

    @property
    def decision(self) -> Mapping[str, Any]:
        """The driver's latest reply."""
        ...

    def send(self, kind: str, data: Mapping[str, Any], *, block: bool = True,
             timeout: float | None = None) -> Mapping[str, Any]:
        """Send one message; the driver's reply (once acknowledged when ``block``)."""
        ...

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop."""
        ...


@dataclass
class TrialContext:
    """Everything a running trial (or one rank of it) knows about itself.

    Attributes
    ----------
    trial, attempt, rank : int
        Which trial, which attempt of it, which rank of a distributed trial.
    config : dict
        The trial's parameters.
    checkpoint_dir : str
        Where :func:`kale_ext.trial.save_checkpoint` writes.
    client : ReportClient or None
        The metric channel; None outside a search or run.
    restore_from : str or None
        A checkpoint file to start from (resume, pause, PBT).
    report_timeout : float
        Seconds a report waits for the driver's acknowledgement. Past it the driver is
        taken for dead: the trial ends and frees its worker, and a resumed search re-runs it.
    worker : str or None
        The worker's name as the trial reports it; None: asked of the backend when the
        trial starts (see :func:`worker_name`).
    extra : dict
        What a launcher adds (``world_size``, ``local_rank`` of a distributed trial).
    """

    trial: int
    attempt: int
    rank: int
    config: dict[str, Any]
    checkpoint_dir: str
    client: ReportClient | None = None
    restore_from: str | None = None
    report_timeout: float = 60.0
    worker: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _auto_step: int = 0


_current: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar(
    "kale_trial", default=None
)


def current() -> TrialContext | None:
    """Return the running trial's context, or None outside a trial."""
    return _current.get()


@contextlib.contextmanager
def using(context: TrialContext) -> Iterator[TrialContext]:
    """Make ``context`` the running trial's context inside the ``with`` block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def worker_name() -> str:
    """Return the name of this process's worker as a trial reports it.

    That is the Dask worker's name, the ipyparallel engine id, ``$KALE_WORKER_NAME``,
    else ``host:pid``.
    """
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        pass
    engine_id = os.environ.get("IPYP_ENGINE_ID") or os.environ.get(WORKER_NAME_ENV)
    return engine_id or f"{socket.gethostname()}:{os.getpid()}"
