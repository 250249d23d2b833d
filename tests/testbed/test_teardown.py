"""up.sh / down.sh: idempotent, and down leaves nothing of the test bed behind.

These tests take the test bed down and bring it back up; they leave it running.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.testbed.conftest import Testbed, is_up, script

pytestmark = pytest.mark.testbed


def running(pid: int) -> bool:
    """Whether ``pid`` exists and has not ended (a zombie only waits for its parent)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def processes_named(*names: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in names and running(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def dev_slurm_up() -> bool:
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, env=env)
    return "UP" in proc.stdout


def test_up_again_is_quick_and_changes_nothing(testbed: Testbed):
    pid_file = testbed.root / "run" / "slurmctld.pid"
    before = pid_file.read_text()
    start = time.monotonic()
    proc = script("up.sh")
    assert proc.returncode == 0, proc.stderr
    assert "already up" in proc.stdout
    assert time.monotonic() - start < 10
    assert pid_file.read_text() == before


def test_up_rebuilds_a_test_bed_that_lost_a_node(testbed: Testbed):
    os.kill(testbed.slurmd_pid("node2"), 9)
    assert not is_up()
    proc = script("up.sh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert is_up()
    assert len(testbed.srun("-N3", "hostname").split()) == 3


def test_down_leaves_nothing_behind_and_up_brings_it_back(testbed: Testbed):
    dev_was_up = dev_slurm_up()
    made_local = (testbed.root / "run" / "made-local").exists()
    # A job still running on a node at teardown goes down with it.
    job = subprocess.Popen(["srun", "-w", "node2", "sleep", "300"], env=testbed.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        node_pids: list[int] = []
        while time.monotonic() < deadline and not any(
                Path(f"/proc/{p}/comm").read_text().strip() == "sleep"
                for p in node_pids if running(p)):
            node_pids = testbed.node_pids("node2")
            time.sleep(0.1)
        assert len(node_pids) >= 4, node_pids  # init, slurmd, slurmstepd, sleep

        start = time.monotonic()
        proc = script("down.sh")
        down_s = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
        assert down_s < 20

        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not set(testbed.nodes) & {line.split()[0] for line in netns.splitlines()}
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert "kaletb0" not in links and "ktb-" not in links
        addrs = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
        assert testbed.login_addr + "/" not in addrs
        assert [p for p in node_pids if running(p)] == []
        assert processes_named("tb-slurmctld", "tb-slurmd", "tb-slurmdbd") == []
        assert [p for p in processes_named("mariadbd")
                if str(testbed.root) in Path(f"/proc/{p}/cmdline").read_text()] == []
        assert not is_up()
        assert sorted(p.name for p in testbed.root.iterdir()) in ([], ["log"])
        if made_local:
            assert not testbed.local.exists()
        if dev_was_up:
            assert dev_slurm_up()
        assert job.wait(timeout=30) != 0
    finally:
        job.kill()
        job.wait()
        up = script("up.sh")
    assert up.returncode == 0, up.stdout + up.stderr
    assert len(testbed.srun("-N3", "hostname").split()) == 3
