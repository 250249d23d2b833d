"""Whether an ipyparallel cluster can still reach its size.

While kale waits for engines it checks the controller, the local engine processes and
the batch jobs, and says at once why the size cannot be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kale_ext import registry
from kale_ext._errors import BatchJobError, ClusterError
from kale_ext.clusters import batch


def tail(path: str | None, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file; empty when there is none."""
    if not path:
        return ""
    try:
        return "".join(Path(path).read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return ""


def jobs_text(kind: str, job_ids: list[str]) -> str:
    """Describe the batch jobs with their states, for an error message."""
    if kind == "local":
        return ""
    states = batch.job_states(kind, job_ids)
    return ", ".join(f"{j} {s}{f' ({r})' if r else ''}" for j, (s, r) in states.items())


def check_alive(cluster_id: str, kind: str, ipp: Any, owner_host: str, job_ids: list[str],
                n: int, have: int) -> None:
    """Raise, with the output that says why, when the cluster cannot reach ``n`` engines.

    That is when the controller, a local engine process or a batch job has ended (or will
    never start) while only ``have`` of ``n`` engines came.
    """
    controller = ipp.controller
    pid = getattr(controller, "pid", -1)
    if pid > 0 and registry.pid_alive(pid, owner_host) is False:
        raise ClusterError(
            f"Cluster {cluster_id}: the ipyparallel controller (pid {pid}) exited. Its output:\n"
            f"{tail(getattr(controller, 'output_file', None))}"
        )
    if kind == "local":
        for es in ipp.engines.values():
            for launcher in list(getattr(es, "launchers", {}).values()):
                proc = launcher.process
                if proc is not None and not proc.is_running():
                    raise ClusterError(
                        f"Cluster {cluster_id}: engine process {launcher.pid} exited before "
                        f"{n} engines registered ({have} did). Its output:\n"
                        f"{tail(launcher.output_file)}"
                    )
        return
    system = batch.system(kind)
    by_job = {str(es.job_id): es for es in ipp.engines.values()}
    for job_id, job in system.job_states(job_ids).items():
        state, reason = job
        hopeless = system.is_hopeless(job)
        if system.is_ended(job) or system.is_ending(job) or hopeless:
            output = tail(getattr(by_job.get(job_id), "output_file", None))
            why = reason if reason.startswith("(") else f"({reason})" if reason else ""
            raise BatchJobError(
                f"Cluster {cluster_id}: {kind} job {job_id} is {state} {why}".rstrip()
                + f" while only {have} of {n} engines registered. "
                + (f"It will never start: {system.explain(job)} " if hopeless else "")
                + f"Job output:\n{output or '(none)'}",
                job_id=job_id, output=output,
            )
