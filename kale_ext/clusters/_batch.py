"""Talking to the batch system: one function runs every command; small tables say how.

The job scripts themselves are written by dask-jobqueue and ipyparallel; this module
only asks the queue about jobs and cancels them.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from kale_ext._errors import BatchJobError, ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchSystem:
    name: str
    status: tuple[str, ...]  # followed by comma-joined job ids; prints "<id> <state> <reason>"
    cancel: tuple[str, ...]
    failed_states: frozenset[str]


SYSTEMS: dict[str, BatchSystem] = {
    "slurm": BatchSystem(
        "slurm",
        ("squeue", "--noheader", "--format=%i %T %R", "--states=all", "--jobs"),
        ("scancel",),
        frozenset({"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                   "DEADLINE", "PREEMPTED"}),
    ),
    "pbs": BatchSystem("pbs", ("qstat", "-f"), ("qdel",), frozenset({"F"})),
    "sge": BatchSystem("sge", ("qstat", "-j"), ("qdel",), frozenset({"Eqw"})),
    "lsf": BatchSystem("lsf", ("bjobs", "-noheader", "-o", "jobid stat pend_reason"), ("bkill",),
                       frozenset({"EXIT"})),
}


def system(kind: str) -> BatchSystem:
    try:
        return SYSTEMS[kind]
    except KeyError:
        raise ConfigError(
            f"Unknown batch system {kind!r}; known: {', '.join(sorted(SYSTEMS))}."
        ) from None


def run(cmd: list[str], *, timeout: float = 30) -> str:
    """Run one batch command; on failure raise with its exit code, command and output."""
    logger.debug("running %s", shlex.join(cmd))
    if shutil.which(cmd[0]) is None:
        raise BatchJobError(
            f"{cmd[0]!r} is not on PATH: this machine has no batch system client. "
            "Start a local cluster (kind='local') or log in where the queue is reachable."
        )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise BatchJobError(f"{shlex.join(cmd)} did not answer within {timeout} s") from e
    if proc.returncode != 0:
        raise BatchJobError(
            f"{shlex.join(cmd)} failed with exit code {proc.returncode}:\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}",
            output=proc.stdout + proc.stderr,
        )
    return proc.stdout


def job_states(kind: str, job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Map each job id to ``(state, reason)``; jobs the queue no longer knows are ``GONE``."""
    if not job_ids:
        return {}
    if kind != "slurm":
        # Only Slurm's squeue has a uniform one-line format; the others answer per job.
        return {j: _other_state(kind, j) for j in job_ids}
    try:
        out = run([*SYSTEMS["slurm"].status, ",".join(job_ids)])
    except BatchJobError as e:
        if "Invalid job id" not in str(e):
            raise
        out = ""  # every id has left the queue's memory
    states = {j: ("GONE", "") for j in job_ids}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in states:
            states[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return states


def _other_state(kind: str, job_id: str) -> tuple[str, str]:
    try:
        out = run([*system(kind).status, job_id])
    except BatchJobError:
        return ("GONE", "")
    for line in out.splitlines():
        line = line.strip()
        if kind == "pbs" and line.startswith("job_state"):
            return (line.split("=", 1)[1].strip(), "")
        if kind == "lsf" and line.split() and line.split()[0] == job_id:
            fields = line.split(None, 2)
            return (fields[1], fields[2] if len(fields) > 2 else "")
    return ("UNKNOWN", "") if kind != "sge" else ("QUEUED_OR_RUNNING", "")


def cancel(kind: str, job_ids: list[str]) -> None:
    """Cancel jobs; jobs already gone are not an error."""
    if not job_ids:
        return
    try:
        run([*system(kind).cancel, *job_ids])
    except BatchJobError as e:
        logger.info("cancel of %s: %s", job_ids, e)
