"""Partitions like a centre's: a short debug queue, a gpu queue and a default regular one."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed


def partitions(testbed: Testbed) -> dict[str, dict[str, str]]:
    out = testbed.run("scontrol", "show", "partition", "-o").stdout
    parts = {}
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        parts[fields["PartitionName"]] = fields
    return parts


def test_partitions_exist_with_their_limits(testbed: Testbed):
    parts = partitions(testbed)
    assert set(parts) == {"regular", "debug", "gpu"}
    expected = {  # partition: (default, default walltime, max walltime)
        "regular": ("YES", "01:00:00", "2-00:00:00"),
        "debug": ("NO", "00:10:00", "00:30:00"),
        "gpu": ("NO", "01:00:00", "12:00:00"),
    }
    for name, (default, default_time, max_time) in expected.items():
        part = parts[name]
        assert (part["Default"], part["DefaultTime"], part["MaxTime"]) == (
            default, default_time, max_time), name
        assert part["Nodes"] == f"node[1-{len(testbed.nodes)}]"
        assert part["State"] == "UP"


def test_job_over_the_debug_walltime_pends_with_slurms_reason(testbed: Testbed):
    job = testbed.run("sbatch", "--parsable", "-p", "debug", "-t", "60",
                      "--wrap", "true").stdout.strip()
    try:
        # Slurm shows PartitionConfig until its next scheduling pass names the limit.
        testbed.wait_squeue(job, "PENDING PartitionTimeLimit", timeout=15)
    finally:
        testbed.run("scancel", job)


def test_debug_job_gets_the_short_default_walltime(testbed: Testbed):
    out = testbed.srun("-p", "debug", "bash", "-c",
                       'squeue -h -j "$SLURM_JOB_ID" -o "%P %l"')
    assert out.split() == ["debug", "10:00"]


@pytest.mark.slurm
def test_development_slurm_keeps_its_own_node_and_jobs(testbed: Testbed):
    dev_env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    out = subprocess.run(["sinfo", "-h", "-o", "%P %N"], capture_output=True, text=True,
                         env=dev_env, check=True).stdout
    for node in testbed.nodes:
        assert node not in out
    name = f"testbed-{uuid.uuid4().hex[:8]}"
    job = testbed.run("sbatch", "--parsable", "--hold", "-J", name,
                      "--wrap", "true").stdout.strip()
    try:
        dev_jobs = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True,
                                  text=True, env=dev_env, check=True).stdout.split()
        assert name not in dev_jobs
        assert testbed.run("squeue", "-h", "-j", job, "-o", "%j").stdout.strip() == name
    finally:
        testbed.run("scancel", job)
