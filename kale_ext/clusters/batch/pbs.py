"""PBS (PBS Pro, OpenPBS, Torque): ``qstat -f``/``qdel``, ``#PBS`` directives, ``PBSCluster``.

``qstat -f <id>`` answers one job with ``name = value`` attributes (long values go on
in tab-indented lines). ``job_state`` is one letter: Q queued, H held, W waiting, T in
transit, M moved, R running, B an array that has begun, S/U suspended, E exiting,
F finished, X an expired subjob, C completed (Torque). ``comment`` says why a job waits.
A job the server does not know: ``qstat: Unknown Job Id <id>``; PBS Pro without ``-x``
says ``Job has finished`` for a job kept in its history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ipyparallel.cluster import launcher as ipp_launcher

from kale_ext.clusters.batch._base import (
    GONE,
    BatchSystem,
    JobState,
    check_token,
    check_walltime,
    count,
    megabytes,
)
from kale_ext.clusters.batch._launcher import KaleBatchMixin, named


@named
class PBSEngineSetLauncher(KaleBatchMixin, ipp_launcher.PBSEngineSetLauncher):
    """ipyparallel's PBS engine set (a job array of n engines)."""


def attributes(text: str) -> dict[str, str]:
    """``qstat -f``'s ``name = value`` lines, continuation lines joined."""
    found: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if line.startswith("\t") and last is not None:  # a long value goes on here
            found[last] += line[1:]
            continue
        name, sep, value = line.lstrip().partition(" = ")
        last = name if sep else None
        if last is not None:
            found[last] = value
    return {name: value.strip() for name, value in found.items()}


class PBS(BatchSystem):
    """PBS Pro, OpenPBS and Torque, asked one job at a time with ``qstat -f``."""

    name = "pbs"
    directive_prefix = "#PBS"
    cancel_command = ("qdel",)
    ended_states = frozenset({"F", "X", "C"})
    ending_states = frozenset({"E"})
    dask_cluster = "PBSCluster"
    dask_passthrough = ("resource_spec",)
    engine_launcher = PBSEngineSetLauncher

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        """Ask ``qstat -f`` about one job."""
        return ["qstat", "-f", *job_ids]

    def parse_status(self, job_ids: Sequence[str], returncode: int, stdout: str,
                     stderr: str) -> dict[str, JobState]:
        """Read qstat's ``job_state`` and ``comment``, or its unknown-job answer."""
        said = f"{stderr}\n{stdout}"
        if returncode != 0:
            if "Unknown Job Id" in said:
                return dict.fromkeys(job_ids, JobState(GONE))
            if "Job has finished" in said:
                return dict.fromkeys(job_ids, JobState("F", "finished"))
            return {}
        attrs = attributes(stdout)
        if "job_state" not in attrs:
            return {}
        return dict.fromkeys(job_ids, JobState(attrs["job_state"], attrs.get("comment", "")))

    def is_hopeless(self, job: JobState) -> bool:
        """Tell whether the job will never start without someone's help."""
        # PBS Pro's scheduler comments a job no node can ever run with "Can Never Run: ...".
        return job.state in ("Q", "H") and job.reason.startswith("Can Never Run")

    def engine_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return the engine job's directives: a select chunk, walltime, account."""
        select = f"select=1:ncpus={count('cores', options.get('cores') or 1)}"
        if options.get("memory"):
            select += f":mem={megabytes(options['memory'])}mb"
        gpus = count("gpus_per_worker", options.get("gpus_per_worker") or 0)
        if gpus:
            select += f":ngpus={gpus}"
        lines = [f"-l {select}"]
        if options.get("walltime"):
            lines.append(f"-l walltime={check_walltime(options['walltime'])}")
        if options.get("account"):
            lines.append(f"-A {check_token('account', options['account'])}")
        return lines
