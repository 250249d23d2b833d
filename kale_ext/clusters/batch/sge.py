"""Grid Engine (SGE, Son of Grid Engine, Univa/Altair GE): ``qstat -j``, ``#$``, ``SGECluster``.

``qstat -j <id>`` answers one job with ``name: value`` lines; Grid Engine 8 adds one
``job_state N:`` line per running array task (``r``, ``t``, ``Rr``, ``dr``, ``Eqw``, ...)
and an ``error reason N:`` line for a task in error. A job still waiting has no task
lines yet. The states are letter sets: ``q`` queued, ``w`` waiting, ``h`` held,
``r`` running, ``t`` transferring, ``R`` restarted, ``s``/``S``/``T`` suspended,
``E`` error (the job stays queued until an administrator clears it), ``d`` being
deleted, ``z`` finished. A job the queue does not know: ``Following jobs do not exist``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ipyparallel.cluster import launcher as ipp_launcher

from kale_ext.clusters.batch._base import (
    GONE,
    BatchSystem,
    JobState,
    check_token,
    check_walltime,
    megabytes,
)
from kale_ext.clusters.batch._launcher import KaleBatchMixin, named

_TASK_LINE = re.compile(r"^(job_state|error reason|usage)\s+(\d+)(?:,\d+)?:\s*(.*)$")
# What "scheduling info" says when it has nothing to say.
_NO_INFO = ("-", "(Collecting of scheduler job information is turned off)",
            "There are no messages available")


@named
class SGEEngineSetLauncher(KaleBatchMixin, ipp_launcher.SGEEngineSetLauncher):
    """ipyparallel's SGE engine set (a job array of n engines)."""


class SGE(BatchSystem):
    """Grid Engine, asked one job at a time with ``qstat -j``."""

    name = "sge"
    directive_prefix = "#$"
    cancel_command = ("qdel",)
    ended_states = frozenset({"z"})
    dask_cluster = "SGECluster"
    dask_account_keyword = "project"
    dask_passthrough = ("resource_spec",)
    engine_launcher = SGEEngineSetLauncher

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        """Ask ``qstat -j`` about one job."""
        return ["qstat", "-j", ",".join(job_ids)]

    def parse_status(self, job_ids: Sequence[str], returncode: int, stdout: str,
                     stderr: str) -> dict[str, JobState]:
        """Read qstat's task states and reasons, or its unknown-job answer."""
        if "Following jobs do not exist" in f"{stderr}\n{stdout}":
            return dict.fromkeys(job_ids, JobState(GONE))
        if returncode != 0 or not re.search(r"^job_number:", stdout, re.MULTILINE):
            return {}
        tasks: dict[str, dict[str, str]] = {}
        info = ""
        for line in stdout.splitlines():
            match = _TASK_LINE.match(line)
            if match:
                tasks.setdefault(match[2], {})[match[1]] = match[3].strip()
            elif line.startswith("scheduling info:"):
                info = line.partition(":")[2].strip()
        states = [JobState(t["job_state"], t.get("error reason", ""))
                  for t in tasks.values() if "job_state" in t]
        if not states:
            # Grid Engine 6 prints no job_state: a task with usage runs; none waits.
            running = any("usage" in t for t in tasks.values())
            states = [JobState("r" if running else "qw", "" if info in _NO_INFO else info)]
        return dict.fromkeys(job_ids, self.worst(states))

    def is_ending(self, job: JobState) -> bool:
        """Tell whether the job is being deleted."""
        return "d" in job.state

    def is_hopeless(self, job: JobState) -> bool:
        """Tell whether the job will never start without someone's help."""
        return "E" in job.state

    def engine_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return the engine job's directives: memory, run time, account."""
        lines = []
        if options.get("memory"):
            lines.append(f"-l h_vmem={megabytes(options['memory'])}M")
        if options.get("walltime"):
            lines.append(f"-l h_rt={check_walltime(options['walltime'])}")
        if options.get("account"):
            lines.append(f"-A {check_token('account', options['account'])}")
        return lines
