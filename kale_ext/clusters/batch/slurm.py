"""Slurm: ``squeue``/``scancel``, ``#SBATCH`` directives, ``SLURMCluster``, ``srun`` engines."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ipyparallel.cluster import launcher as ipp_launcher

from kale_ext._errors import BatchJobError
from kale_ext.clusters.batch._base import (
    CONSTRAINT,
    GONE,
    BatchSystem,
    JobState,
    check_token,
    check_walltime,
    count,
    megabytes,
    query,
)
from kale_ext.clusters.batch._launcher import KaleBatchMixin, named


@named
class SlurmEngineSetLauncher(KaleBatchMixin, ipp_launcher.SlurmEngineSetLauncher):
    """ipyparallel's Slurm engine set: one job running ``srun`` with n engine tasks."""


class Slurm(BatchSystem):
    """Slurm, asked with one ``squeue`` for all jobs (``--states=all`` keeps ended ones)."""

    name = "slurm"
    directive_prefix = "#SBATCH"
    cancel_command = ("scancel",)
    batch_status = True
    ended_states = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL",
                              "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
    ending_states = frozenset({"COMPLETING"})
    #: pending reasons with which a job will never start
    hopeless_reasons: ClassVar[frozenset[str]] = frozenset({
        "BadConstraints", "PartitionConfig", "InvalidAccount", "InvalidQOS",
        "PartitionTimeLimit", "QOSMaxWallDurationPerJobLimit", "PartitionNodeLimit",
        "AccountNotAllowed", "ReqNodeNotAvail",
    })
    #: what each hopeless reason asks the user to change
    advice: ClassVar[dict[str, str]] = {
        "PartitionTimeLimit": "The walltime is over the partition's limit (sinfo -o '%P %l' "
                              "lists them): lower walltime or pick another queue.",
        "PartitionConfig": "The request does not fit the partition (its walltime, node, core "
                           "or GPU limits, or whom it admits): check queue and resources.",
        "ReqNodeNotAvail": "A node the job needs is down, drained or reserved (scontrol show "
                           "node, scontrol show reservation): leave it out or wait for it.",
        "QOSMaxWallDurationPerJobLimit": "The walltime is over the QOS's limit (sacctmgr "
                                         "show qos): lower walltime or pick another qos.",
        "BadConstraints": "No node has the requested features: check constraint.",
        "PartitionNodeLimit": "The job asks for more nodes than the partition allows.",
        "InvalidAccount": "The account is not valid here: check account.",
        "AccountNotAllowed": "The account may not use this partition: check account and queue.",
        "InvalidQOS": "The qos is not valid for this account or partition: check qos.",
    }
    dask_cluster = "SLURMCluster"
    dask_directives = {"qos": "--qos={}", "constraint": "--constraint={}",
                       "gpus_per_worker": "--gpus={}"}
    engine_launcher = SlurmEngineSetLauncher

    def status_command(self, job_ids: Sequence[str]) -> list[str]:
        """Ask ``squeue`` about all jobs at once, ended ones included."""
        return ["squeue", "--noheader", "--format=%i %T %R", "--states=all",
                "--jobs", ",".join(job_ids)]

    def parse_status(self, job_ids: Sequence[str], returncode: int, stdout: str,
                     stderr: str) -> dict[str, JobState]:
        """Read squeue's lines (id, state, reason); a listed id left out is gone."""
        if returncode != 0:
            # Asked only about ids slurmctld has forgotten, squeue refuses them all.
            if "Invalid job id" in stderr:
                return dict.fromkeys(job_ids, JobState(GONE))
            return {}
        # With --states=all squeue lists every job slurmctld still holds, ended ones too:
        # an id it leaves out has been purged from its memory.
        states = dict.fromkeys(job_ids, JobState(GONE))
        for line in stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[0] in states:
                states[parts[0]] = JobState(parts[1], parts[2].strip() if len(parts) > 2 else "")
        return states

    def is_hopeless(self, job: JobState) -> bool:
        """Tell whether the job will never start without someone's help."""
        return job.state == "PENDING" and self._reason(job) in self.hopeless_reasons

    def explain(self, job: JobState) -> str:
        """Say what the job's pending reason asks the user to change."""
        return self.advice.get(self._reason(job), super().explain(job))

    @staticmethod
    def _reason(job: JobState) -> str:
        # squeue's %R shows a pending reason in parentheses, some with details after a
        # comma: "(PartitionTimeLimit)", "(ReqNodeNotAvail, UnavailableNodes:node3)".
        return job.reason.strip().strip("()").split(",", 1)[0].strip()

    def node_addresses(self, queue: str | None = None) -> list[str]:
        """Return the ``NodeAddr`` of every node of ``queue``, as ``sinfo`` lists them.

        With ``queue`` None, those of the default partition's nodes.
        """
        cmd = ["sinfo", "--noheader", "--Node", "--format=%o"]
        if queue:
            cmd += ["--partition", queue]
        try:
            proc = query(cmd, timeout=10)
        except BatchJobError:
            return []
        if proc.returncode != 0:
            return []
        return list(dict.fromkeys(line.strip() for line in proc.stdout.splitlines()
                                  if line.strip()))

    def walltime_units(self, fields: int, days: bool) -> list[int] | None:
        """Read walltimes as ``MM``, ``MM:SS``, ``HH:MM:SS`` or ``D-HH[:MM[:SS]]``."""
        if days:  # D-HH[:MM[:SS]]
            return super().walltime_units(fields, days)
        return {1: [60], 2: [60, 1], 3: [3600, 60, 1]}.get(fields)  # MM, MM:SS, HH:MM:SS

    def engine_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return the engine job's directives: cpus and memory per task, GPUs, constraint."""
        cores = count("cores", options.get("cores") or 1)
        lines = [f"--cpus-per-task={cores}"]
        if options.get("memory"):
            lines.append(f"--mem-per-cpu={math.ceil(megabytes(options['memory']) / cores)}M")
        gpus = count("gpus_per_worker", options.get("gpus_per_worker") or 0)
        if gpus:
            lines.append(f"--gpus-per-task={gpus}")
        if options.get("constraint"):
            constraint = check_token("constraint", options["constraint"], CONSTRAINT)
            lines.append(f"--constraint={constraint}")
        return lines

    def engine_traits(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Set ipyparallel's own Slurm traits: account, qos and time limit."""
        # ipyparallel's Slurm launcher writes these directives itself.
        traits: dict[str, Any] = {}
        if options.get("account"):
            traits["account"] = check_token("account", options["account"])
        if options.get("qos"):
            traits["qos"] = check_token("qos", options["qos"])
        if options.get("walltime"):
            traits["timelimit"] = check_walltime(options["walltime"])
        return traits
