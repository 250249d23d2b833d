"""Batch systems: one class per system, found through the ``kale_ext.batch`` entry points.

Each system (:mod:`.slurm`, :mod:`.pbs`, :mod:`.sge`, :mod:`.lsf`) is one file holding
everything that system means to kale: how to ask its queue about jobs and read the
answer, how to cancel them, how its walltimes read, which of its state words mean
ended, ending or hopeless, which dask-jobqueue class writes its worker jobs and which
directives and ipyparallel launcher start its engines. A site adds a system with one
such file, registered as ``[project.entry-points."kale_ext.batch"] name = "mod:Class"``,
and a profile with ``kind: name``. The cluster kinds are ``local`` and these names.

Job states stay in each system's own words (``PENDING``, ``Q``, ``qw``, ``PEND``) with
its reasons (``(PartitionTimeLimit)``, ``Can Never Run: ...``), because users read
them in the status view and because "will this job ever start" lives in those reasons.
kale adds two words of its own: :data:`GONE`, only when the queue explicitly answers
that it does not know a job, and :data:`UNKNOWN`, when the queue could not be asked
(no client, a failing or hanging command) or its answer could not be read.

PSI/J (``psij-python``) was considered for the states and is not used: its executors
submit their own job scripts (dask-jobqueue and ipyparallel write ours), it has no
Grid Engine executor, and its job-state model (QUEUED, ACTIVE, COMPLETED, FAILED,
CANCELED) drops the pending reasons that tell a hopeless job from a waiting one.
Its per-system tables of state words informed the ones here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib.metadata import entry_points

from kale_ext._errors import ConfigError
from kale_ext.clusters.batch._base import GONE, UNKNOWN, BatchSystem, JobState, run

__all__ = [
    "GONE",
    "UNKNOWN",
    "BatchSystem",
    "JobState",
    "cancel",
    "job_states",
    "names",
    "run",
    "system",
]

GROUP = "kale_ext.batch"


@functools.cache
def names() -> tuple[str, ...]:
    """Return the registered batch systems' names, sorted (nothing is imported).

    Read once per process, as :data:`kale_ext.clusters.KINDS` is: a scan of every
    installed package's entry points costs tens of milliseconds.
    """
    return tuple(sorted({ep.name for ep in entry_points(group=GROUP)}))


@functools.cache
def system(kind: str) -> BatchSystem:
    """Return the batch system registered as ``kind``."""
    found = entry_points(group=GROUP, name=kind)
    if not found:
        raise ConfigError(
            f"Unknown batch system {kind!r}; known: {', '.join(names()) or 'none'}."
        )
    cls = next(iter(found)).load()
    if not (isinstance(cls, type) and issubclass(cls, BatchSystem)):
        raise ConfigError(f"The {GROUP} entry point {kind!r} names {cls!r}, which is not a "
                          "BatchSystem subclass; fix the package that registers it.")
    return cls()


def job_states(kind: str, job_ids: Sequence[str]) -> dict[str, JobState]:
    """Ask the queue of ``kind`` for each job's state.

    :data:`GONE` only when the queue says it does not know a job, :data:`UNKNOWN` (with
    the reason) when the queue could not be asked or its answer read.
    """
    if not job_ids:
        return {}
    return system(kind).job_states(job_ids)


def cancel(kind: str, job_ids: Sequence[str]) -> None:
    """Cancel jobs; jobs already gone are not an error."""
    if job_ids:
        system(kind).cancel(job_ids)
