"""What every batch system is to kale: the :class:`BatchSystem` base and its helpers.

A system says how to ask the queue about jobs and how to read the answer, how to cancel
jobs, how its walltimes read, which of its own state words mean "ended", "ending" or
"will never start", which dask-jobqueue class writes its worker jobs, and which
directives and ipyparallel launcher start its engines. Everything else (waiting for
workers, scaling, cleaning up) is written once, against this class.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from kale_ext._errors import BatchJobError, ConfigError

logger = logging.getLogger(__name__)

GONE = "GONE"  # the queue said it does not know the job (any more)
UNKNOWN = "UNKNOWN"  # the queue could not be asked, or its answer could not be read


class JobState(NamedTuple):
    """A job's state in the batch system's own word, and why (pending reason, comment)."""

    state: str
    reason: str = ""


# -- running commands -------------------------------------------------------------------

def _require(cmd: Sequence[str]) -> None:
    if shutil.which(cmd[0]) is None:
        raise BatchJobError(
            f"{cmd[0]!r} is not on PATH: this machine has no batch system client. "
            "Start a local cluster (kind='local') or log in where the queue is reachable."
        )


def query(cmd: Sequence[str], *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a status command and return whatever it answered, its exit code included.

    Raises :class:`BatchJobError` only when there was no answer: the command is not on
    PATH, could not start, or did not finish within ``timeout`` seconds.
    """
    logger.debug("running %s", shlex.join(cmd))
    _require(cmd)
    try:
        # A session of its own: on a timeout the whole group goes, a wrapper script's
        # children too (they would hold the pipes open).
        proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    except OSError as e:
        raise BatchJobError(f"{shlex.join(cmd)} could not run: {e}") from e
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BatchJobError(f"{shlex.join(cmd)} did not answer within {timeout:g} s") from e
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run(cmd: Sequence[str], *, timeout: float = 30) -> str:
    """Run one batch command; on failure raise with its exit code, command and output."""
    proc = query(cmd, timeout=timeout)
    if proc.returncode != 0:
        raise BatchJobError(
            f"{shlex.join(cmd)} failed with exit code {proc.returncode}:\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}",
            output=proc.stdout + proc.stderr,
        )
    return proc.stdout


# -- directive values -------------------------------------------------------------------

# A directive value: letters, digits and the punctuation batch systems use in names,
# sizes and times. No quotes, no $, no `, no ;, no braces, no newlines.
TOKEN = re.compile(r"[A-Za-z0-9_.,:=+@%/-]+")
# Slurm constraints also combine features with & | [ ] * (never seen by a shell).
CONSTRAINT = re.compile(r"[A-Za-z0-9_.,:=+@%/&|\[\]*-]+")
# An extra directive: flags and values separated by single spaces.
EXTRA = re.compile(r"-[A-Za-z0-9_.,:=+@%/ -]*")
_WALLTIME = re.compile(r"[0-9]+(?:[-:][0-9]+){0,3}")


def check_token(name: str, value: Any, pattern: re.Pattern[str] = TOKEN) -> str:
    """Return ``value`` as a string when it is safe inside a job-script directive."""
    text = str(value)
    if not pattern.fullmatch(text):
        raise ConfigError(
            f"{name}={text!r} is not allowed in a batch job script: it may contain only "
            f"characters matching {pattern.pattern} (no spaces, newlines, quotes or shell "
            f"metacharacters). Pass the plain name, e.g. {name}='debug'."
        )
    return text


def check_walltime(value: Any) -> str:
    """Check a walltime for a directive: ``HH:MM:SS``, ``MM`` or ``D-HH:MM:SS``."""
    text = check_token("walltime", value)
    if not _WALLTIME.fullmatch(text):
        raise ConfigError(
            f"walltime={text!r} is not a batch time limit; write it as 'HH:MM:SS', "
            "'MM' or 'D-HH:MM:SS'."
        )
    return text


def megabytes(value: Any) -> int:
    """Convert a memory size (``'4GiB'``, ``'500MB'`` or bytes) to whole MiB, at least 1."""
    from dask.utils import parse_bytes

    try:
        nbytes = parse_bytes(value) if isinstance(value, str) else int(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"memory={value!r} is not a size; write it as '4GiB', '500MB' or bytes."
        ) from e
    return max(1, math.ceil(nbytes / 2**20))


def count(name: str, value: Any) -> int:
    """Return ``value`` when it is a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, but got {name}={value!r}.")
    return value


def as_list(name: str, value: Any) -> list[str]:
    """Return a string or a list of strings as a list (None: empty)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name} must be a string or a list of strings, but got {value!r}.")
    return [str(v) for v in value]


# -- the system -------------------------------------------------------------------------

class BatchSystem(ABC):
    """One batch system: its commands, its state words, its job-script dialect.

    Subclasses set the class attributes and implement :meth:`status_command`,
    :meth:`parse_status` and :meth:`engine_directives`; they are registered under the
    ``kale_ext.batch`` entry-point group with the kind's name (``slurm = ...:Slurm``).
    """

    name: ClassVar[str]
    #: the prefix of its job-script directives, e.g. ``#SBATCH``
    directive_prefix: ClassVar[str]
    #: followed by job ids
    cancel_command: ClassVar[tuple[str, ...]]
    #: True when one status command answers for many jobs (else one command per job)
    batch_status: ClassVar[bool] = False
    #: states of a job that will never run (again): finished, failed, cancelled
    ended_states: ClassVar[frozenset[str]] = frozenset()
    #: states of a job on its way out
    ending_states: ClassVar[frozenset[str]] = frozenset()
    #: the dask-jobqueue cluster class (its ``job_cls`` writes the worker job script)
    dask_cluster: ClassVar[str]
    #: the dask-jobqueue keyword that carries ``account``
    dask_account_keyword: ClassVar[str] = "account"
    #: kale option -> extra directive template, for options jobqueue has no keyword for
    dask_directives: ClassVar[Mapping[str, str]] = {}
    #: jobqueue keywords taken as they are (validated)
    dask_passthrough: ClassVar[tuple[str, ...]] = ()
    #: the ipyparallel engine-set launcher class that submits engine jobs
    engine_launcher: ClassVar[type[Any]]

    # -- asking the queue ----------------------------------------------------------------
    @abstractmethod
    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        """Return the command that asks the queue about ``job_ids``.

        One id at a time unless :attr:`batch_status`.
        """

    @abstractmethod
    def parse_status(self, job_ids: Sequence[str], returncode: int, stdout: str,
                     stderr: str) -> dict[str, JobState]:
        """Read the status command's answer: a state for each id it determines.

        Ids left out are reported :data:`UNKNOWN`. Only an explicit answer that the queue
        does not know a job makes it :data:`GONE`.
        """

    def job_states(self, job_ids: Sequence[str], *, timeout: float = 30) -> dict[str, JobState]:
        """Ask the queue for each job's :class:`JobState`; a failed query says :data:`UNKNOWN`."""
        ids = [str(j) for j in job_ids]
        groups = [ids] if self.batch_status else [[j] for j in ids]
        states: dict[str, JobState] = {}
        for group in groups:
            if not group:
                continue
            cmd = self.status_command(group)
            try:
                proc = query(cmd, timeout=timeout)
            except BatchJobError as e:
                states.update({j: JobState(UNKNOWN, str(e)) for j in group})
                continue
            try:
                parsed = self.parse_status(group, proc.returncode, proc.stdout, proc.stderr)
            except Exception as e:  # an answer in a shape nobody expected: say so
                logger.warning("could not read the answer of %s: %s", shlex.join(cmd), e)
                parsed = {}
            said = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[:1]
            why = (f"{shlex.join(cmd)} exited with code {proc.returncode}"
                   + (f": {said[0][:200]}" if said else ""))
            for j in group:
                states[j] = parsed.get(j) or JobState(UNKNOWN, why)
        return states

    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs; jobs already gone are not an error."""
        if not job_ids:
            return
        try:
            run([*self.cancel_command, *map(str, job_ids)])
        except BatchJobError as e:
            logger.info("cancel of %s: %s", list(job_ids), e)

    # -- where the workers run ---------------------------------------------------------------
    def node_addresses(self, queue: str | None = None) -> list[str]:
        """Return the addresses (or host names) of the compute nodes of ``queue``.

        They tell which address of this host the workers reach (the local end of the
        route to them). Empty when the system cannot list them; the default lists none.
        """
        return []

    # -- what a state means ----------------------------------------------------------------
    def is_ended(self, job: JobState) -> bool:
        """Tell whether the job will never bring workers (again)."""
        return job.state == GONE or job.state in self.ended_states

    def is_ending(self, job: JobState) -> bool:
        """Tell whether the job is on its way out."""
        return job.state in self.ending_states

    def is_hopeless(self, job: JobState) -> bool:
        """Tell whether the job waits for what will not come without someone's help."""
        return False

    def explain(self, job: JobState) -> str:
        """Say what a hopeless job's reason asks the user to change."""
        return ("Fix the option it names (queue, walltime, account, resources) in the profile "
                "or keywords.")

    def worst(self, states: Sequence[JobState]) -> JobState:
        """Sum up the tasks of an array job in one state.

        An ended, ending or hopeless task comes first (the set cannot be complete), else
        the first task's state.
        """
        for test in (self.is_ended, self.is_ending, self.is_hopeless):
            for job in states:
                if test(job):
                    return job
        return states[0]

    # -- walltime ----------------------------------------------------------------------------
    def walltime_units(self, fields: int, days: bool) -> list[int] | None:
        """Return the seconds per ``:``-field of a walltime with ``fields`` fields.

        ``days`` says that the fields follow ``D-``. None when the system does not read
        such a walltime.

        The default reads ``[[HH:]MM:]SS`` (PBS, SGE) and ``D-HH[:MM[:SS]]``.
        """
        if days:
            return [3600, 60, 1][:fields] if fields <= 3 else None
        return [3600, 60, 1][-fields:] if fields <= 3 else None

    def walltime_seconds(self, walltime: str) -> int:
        """Return the seconds in ``walltime`` as this system reads it."""
        days, _, clock = walltime.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        units = self.walltime_units(len(parts), bool(days))
        if not units:
            raise ConfigError(f"walltime={walltime!r} has too many fields for {self.name}.")
        return int(days or 0) * 86400 + sum(p * u for p, u in zip(parts, units, strict=True))

    # -- starting ipyparallel engines -----------------------------------------------------------
    @abstractmethod
    def engine_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return validated directive lines, without the prefix, for one engine job.

        Resources are per engine: ``cores``, ``memory``, ``gpus_per_worker``; plus what
        ipyparallel's launcher has no trait for (walltime, account, constraint).
        """

    def engine_traits(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Return values for the launcher's own traits (besides ``queue``), validated."""
        return {}

    def dask_cluster_class(self) -> type[Any]:
        """Return the dask-jobqueue cluster class (imported on first use)."""
        import importlib

        cls: type[Any] = getattr(importlib.import_module("dask_jobqueue"), self.dask_cluster)
        return cls

    def __repr__(self) -> str:
        return f"<batch system {self.name}>"
