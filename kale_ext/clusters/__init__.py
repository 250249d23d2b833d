"""Clusters: start, list, reconnect to and stop Dask or ipyparallel clusters.

Backends are found through the ``kale_ext.clusters`` entry-point group, so a site
package can add one without touching kale_ext.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import entry_points
from typing import Any

from kale_ext import config, registry
from kale_ext._errors import BackendNotFound, ClusterNotFound, ConfigError
from kale_ext.clusters import batch
from kale_ext.clusters._base import (
    KINDS,
    Cluster,
    ClusterRecord,
    ClusterStatus,
    JobInfo,
    Slot,
    WorkerInfo,
    WorkerRetired,
)
from kale_ext.clusters._dask_tls import dashboard_client_context
from kale_ext.clusters._failures import note_failed_start
from kale_ext.clusters._repr import SERVER_BASE_URL, status_html

__all__ = [
    "SERVER_BASE_URL",
    "Cluster",
    "ClusterRecord",
    "ClusterStatus",
    "JobInfo",
    "Slot",
    "WorkerInfo",
    "WorkerRetired",
    "backends",
    "check_start",
    "clusters",
    "connect",
    "dashboard_client_context",
    "start_cluster",
    "status_html",
    "stop",
]

logger = logging.getLogger(__name__)


def backends() -> dict[str, type[Cluster]]:
    """Installed cluster backends by name (read once per process)."""
    return dict(_installed_backends())


@functools.cache
def _installed_backends() -> dict[str, type[Cluster]]:
    # Scanning every installed package's entry points costs tens of milliseconds.
    found: dict[str, type[Cluster]] = {}
    for ep in entry_points(group="kale_ext.clusters"):
        try:
            found[ep.name] = ep.load()
        except ImportError as e:  # a backend whose dependency is missing is skipped
            logger.debug("backend %s unavailable: %s", ep.name, e)
    return found


def _backend(name: str) -> type[Cluster]:
    known = backends()
    if name not in known:
        raise BackendNotFound(
            f"Unknown backend {name!r}. Installed backends: {', '.join(sorted(known)) or 'none'}. "
            "Pass backend='dask' or backend='ipyparallel'."
        )
    return known[name]


def check_start(
    kind: str | None = None,
    *,
    backend: str | None = None,
    workers: int | None = None,
    profile: str | None = None,
    **overrides: Any,
) -> tuple[str, str, dict[str, Any]]:
    """Resolve and check the options of a start; start nothing and ask no batch queue.

    Takes :func:`start_cluster`'s arguments, which calls it first.

    Returns
    -------
    tuple
        The backend's name, the kind and the resolved options.

    Raises
    ------
    ConfigError
        Naming the option, its value and the rule, for the first bad value.
    BackendNotFound
        For an unknown backend.
    """
    kind, options = _resolve(kind, backend=backend, workers=workers, profile=profile,
                             **overrides)
    cls = _backend(str(options.pop("backend", "dask")))
    cls.check(kind, options)
    return cls.backend, kind, options


def _resolve(kind: str | None, **keywords: Any) -> tuple[str, dict[str, Any]]:
    profile = keywords.pop("profile")
    if profile is not None and not isinstance(profile, str):
        raise ConfigError(f"profile must be a profile's name, but got profile={profile!r}.")
    if kind is not None and not isinstance(kind, str):
        raise ConfigError(f"kind must be one of {', '.join(KINDS)} or a profile's name, "
                          f"but got kind={kind!r}.")
    if kind is not None and kind not in KINDS and profile is None and kind in config.profiles():
        profile, kind = kind, None  # start_cluster("perlmutter-gpu") names a profile
    options = config.resolve(profile, kind=kind, **keywords)
    kind = options.pop("kind", "local")
    if kind not in KINDS:
        raise ConfigError(
            f"Unknown cluster kind {kind!r}; expected one of {', '.join(KINDS)}."
        )
    workers_n = options.get("workers", 1)
    if not isinstance(workers_n, int) or isinstance(workers_n, bool) or workers_n < 0:
        raise ConfigError(
            f"workers must be a non-negative integer, but got workers={workers_n!r}."
        )
    backend = options.get("backend", "dask")
    if not isinstance(backend, str):
        raise ConfigError(f"backend must be 'dask' or 'ipyparallel', but got "
                          f"backend={backend!r}.")
    return str(kind), options


def start_cluster(
    kind: str | None = None,
    *,
    backend: str | None = None,
    workers: int | None = None,
    profile: str | None = None,
    **overrides: Any,
) -> Cluster:
    """Start a cluster and record it in the registry.

    Parameters
    ----------
    kind
        ``"local"`` or a batch system (``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``, or
        another registered one, see :mod:`kale_ext.clusters.batch`); default from the profile.
    backend
        ``"dask"`` or ``"ipyparallel"``; default from the profile.
    workers
        Number of workers (engines) to start and wait for.
    profile
        A site profile under ``kale.profiles``. When None: ``kale.default-profile`` if
        ``kind`` is None or that profile is of ``kind``, else the profile named after
        ``kind`` (``slurm``, ``pbs``, ...), else none: a kind never takes the keys of
        another kind's profile (see :func:`kale_ext.config.profile_for`).
    **overrides
        Any profile key (``queue``, ``account``, ``walltime``, ``cores``, ``memory``,
        ``gpus_per_worker``, ``job_extra``, ``prologue``, ...); None leaves the profile's.
    """
    kind, options = _resolve(kind, backend=backend, workers=workers, profile=profile,
                             **overrides)
    cls = _backend(str(options.pop("backend", "dask")))
    try:
        cls.check(kind, options)  # every value, before anything starts
        return cls.start(kind, options)
    except Exception as e:  # kept for the sidebar until dismissed
        note_failed_start(kind, cls.backend, options, e)
        raise


def _records() -> list[ClusterRecord]:
    return [ClusterRecord.from_dict(d) for d in registry.records("clusters")]


def _record(cluster_id: str) -> ClusterRecord:
    data = registry.read("clusters", cluster_id)
    if data is None:
        known = [r.id for r in _records()]
        raise ClusterNotFound(
            f"No cluster {cluster_id!r} in the registry at {registry.kind_dir('clusters')}. "
            f"Known: {', '.join(known) or 'none'}; list them with kale.clusters()."
        )
    return ClusterRecord.from_dict(data)


def connect(cluster_id: str | None = None) -> Cluster:
    """Reconnect to a registered cluster (the newest one when ``cluster_id`` is None)."""
    if cluster_id is None:
        live = _records()
        if not live:
            raise ClusterNotFound("No cluster is registered; start one with kale.start_cluster().")
        record = live[-1]
    else:
        record = _record(cluster_id)
    return _backend(record.backend).connect(record)


def stop(cluster_id: str) -> None:
    """Stop a registered cluster from any process, cancelling its batch jobs."""
    record = _record(cluster_id)
    try:
        cluster = _backend(record.backend).connect(record)
    except Exception as e:  # unreachable: still cancel its jobs and drop the record
        logger.info("cluster %s unreachable (%s); cancelling its jobs", cluster_id, e)
        if record.kind != "local":
            batch.cancel(record.kind, record.job_ids)
        record.forget()
        return
    cluster.stop()


def is_stale(record: ClusterRecord) -> bool:
    """Tell whether ``record``'s owner died and nothing of its cluster is left to reach."""
    alive = registry.pid_alive(record.owner_pid, record.owner_host)
    if record.kind == "local":
        # A local cluster lives inside its owner's process tree.
        return alive is False
    if alive or (alive is None and not record.job_ids):
        return False  # an owner elsewhere (a daemon's job) with no jobs: cannot tell
    system = batch.system(record.kind)
    return all(system.is_ended(job)
               for job in batch.job_states(record.kind, record.job_ids).values())


def clusters(*, clean: bool = True) -> list[ClusterStatus]:
    """Every registered cluster with its live status; stale records are removed."""
    out = []
    for record in _records():
        if clean and is_stale(record):
            logger.info("removing stale cluster record %s", record.id)
            record.forget()
            continue
        try:
            cluster = _backend(record.backend).connect(record)
            try:
                out.append(cluster.status())
            finally:
                cluster.disconnect()
        except Exception as e:
            out.append(
                ClusterStatus(record.id, record.backend, record.kind, "unreachable",
                              record.address, record.dashboard, detail=str(e))
            )
    return out
