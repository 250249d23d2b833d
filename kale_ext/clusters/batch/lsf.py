"""IBM Spectrum LSF: ``bjobs``/``bkill``, ``#BSUB`` directives, ``LSFCluster``.

``bjobs -noheader -o "jobid stat pend_reason" <id>`` prints one line per job (one per
element of an array job): the id, the state (PEND, PROV, PSUSP, RUN, USUSP, SSUSP,
WAIT, DONE, EXIT, UNKWN, ZOMBI) and the pending reason, ``-`` when there is none.
A job the queue does not know: ``Job <id> is not found``.
"""

from __future__ import annotations

import os
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
class LSFEngineSetLauncher(KaleBatchMixin, ipp_launcher.LSFEngineSetLauncher):
    """ipyparallel's LSF engine set (a job array of n engines)."""

    def start(self, n: int = 1) -> str:
        """Submit the engine job, feeding the script to bsub's stdin."""
        # bsub reads its #BSUB directives from stdin; feed the file rather than a shell pipe.
        self.write_batch_script(n)
        with open(self.batch_file) as script:
            output = self._run_command(self.submit_command, stdin=script,
                                       env={**os.environ, **self.get_env()})
        job_id: str = self.parse_job_id(output)
        self.notify_start(job_id)
        return job_id


class LSF(BatchSystem):
    """LSF, asked one job at a time with ``bjobs``."""

    name = "lsf"
    directive_prefix = "#BSUB"
    cancel_command = ("bkill",)
    ended_states = frozenset({"DONE", "EXIT"})
    ending_states = frozenset({"ZOMBI"})
    dask_cluster = "LSFCluster"
    dask_account_keyword = "project"
    dask_directives = {"gpus_per_worker": "-gpu num={}"}
    engine_launcher = LSFEngineSetLauncher

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        """Ask ``bjobs`` about one job."""
        return ["bjobs", "-noheader", "-o", "jobid stat pend_reason", *job_ids]

    def parse_status(self, job_ids: Sequence[str], returncode: int, stdout: str,
                     stderr: str) -> dict[str, JobState]:
        """Read bjobs' lines (id, state, pending reason), or its unknown-job answer."""
        states: dict[str, list[JobState]] = {}
        for line in stdout.splitlines():
            fields = line.split(None, 2)
            if len(fields) >= 2 and fields[0] in job_ids:
                reason = fields[2].strip() if len(fields) > 2 else ""
                states.setdefault(fields[0], []).append(
                    JobState(fields[1], "" if reason == "-" else reason))
        found = {j: self.worst(s) for j, s in states.items()}
        said = f"{stderr}\n{stdout}"
        for j in job_ids:
            if j not in found and f"Job <{j}> is not found" in said:
                found[j] = JobState(GONE)
        return found

    def walltime_units(self, fields: int, days: bool) -> list[int] | None:
        """Read walltimes as ``[HH:]MM``."""
        return [3600, 60][-fields:] if fields <= 2 else None  # [HH:]MM

    def engine_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return the engine job's directives: slots, memory, run limit, project."""
        lines = [f"-n {count('cores', options.get('cores') or 1)}"]
        if options.get("memory"):
            lines.append(f"-M {megabytes(options['memory'])}MB")
        if options.get("walltime"):
            lines.append(f"-W {check_walltime(options['walltime'])}")
        if options.get("account"):
            lines.append(f"-P {check_token('account', options['account'])}")
        return lines
