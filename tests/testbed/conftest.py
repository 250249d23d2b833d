"""The multi-node test bed of deploy/testbed: a session fixture that brings it up.

Tests here need root (network namespaces). They fail, never skip, when the test bed cannot
be brought up: ``make test`` starts it and expects it to work.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / "deploy" / "testbed"


def script(name: str, timeout: float = 180, env: dict[str, str] | None = None,
           ) -> subprocess.CompletedProcess[str]:
    """Run one of deploy/testbed's scripts; return the finished process."""
    return subprocess.run(["bash", str(TESTBED / name)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@dataclass
class Testbed:
    """Where the running test bed is and how to reach it."""

    __test__ = False  # not a test class, whatever its name

    env: dict[str, str]
    root: Path
    conf: Path
    scratch: Path
    local: Path
    login_addr: str
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> address

    @classmethod
    def from_env_script(cls) -> Testbed:
        proc = script("env.sh", timeout=30)
        assert proc.returncode == 0, proc.stderr
        values: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            values[name] = shlex.split(value)[0] if value else ""
        env = {**os.environ, **values}
        nodes = dict(pair.split("=") for pair in values["KALE_TESTBED_NODE_ADDRS"].split())
        return cls(env=env, root=Path(values["KALE_TESTBED_ROOT"]),
                   conf=Path(values["SLURM_CONF"]), scratch=Path(values["SCRATCH"]),
                   local=Path(values["KALE_TESTBED_LOCAL"]),
                   login_addr=values["KALE_TESTBED_LOGIN_ADDR"], nodes=nodes)

    def run(self, *args: str, timeout: float = 60, check: bool = True,
            ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client (srun, sbatch, sinfo, ...) against the test bed."""
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              env=self.env)
        if check:
            assert proc.returncode == 0, (
                f"{shlex.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def srun(self, *args: str, timeout: float = 60) -> str:
        """``srun`` on the test bed; its stdout. Fails the test when it fails."""
        return self.run("srun", *args, timeout=timeout).stdout

    def on_node(self, node: str, *cmd: str, timeout: float = 30,
                ) -> subprocess.CompletedProcess[str]:
        """Run a command in a node's namespaces outside Slurm (deploy/testbed/on-node.sh)."""
        return subprocess.run(["bash", str(TESTBED / "on-node.sh"), node, *cmd],
                              capture_output=True, text=True, timeout=timeout)

    def node_pids(self, node: str) -> list[int]:
        """Every process on ``node`` (in its network namespace), as pids of this host."""
        out = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True,
                             timeout=10).stdout
        return [int(pid) for pid in out.split()]

    def slurmd_pid(self, node: str) -> int:
        """The host pid of ``node``'s slurmd (its pid file holds the node-namespace pid)."""
        for pid in self.node_pids(node):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "tb-slurmd":
                    return pid
            except OSError:
                continue
        raise AssertionError(f"no slurmd runs on {node}")

    def wait_job(self, job_id: str, timeout: float = 60) -> str:
        """Wait until job ``job_id`` ends; return its final state (``COMPLETED``, ...).

        Polls faster than ``sbatch --wait``, whose checks grow to 10 s apart.
        """
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            out = self.run("scontrol", "show", "job", "-o", job_id, check=False).stdout
            state = next((f.split("=", 1)[1] for f in out.split() if f.startswith("JobState=")),
                         "")
            if state not in ("", "PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
                return state
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {state or 'unknown'} after {timeout} s")

    def wait_squeue(self, job_id: str, expected: str, timeout: float = 30) -> None:
        """Wait until squeue shows ``job_id`` as ``expected`` (``"%T %r"``: state reason)."""
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.run("squeue", "-h", "-j", job_id, "-o", "%T %r",
                            check=False).stdout.strip()
            if line == expected:
                return
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not {expected!r} after {timeout} s: {line!r}")


def is_up() -> bool:
    return script("status.sh", timeout=30).returncode == 0


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    """The running test bed; brought up here unless it already runs (``make test``).

    What this fixture started, it also removes at the end of the session; a test bed that
    ran before (``make testbed-up``) is left running.
    """
    was_up = is_up()
    if not was_up:
        proc = script("up.sh")
        if proc.returncode != 0:
            pytest.fail(f"deploy/testbed/up.sh failed (needs root and iproute2):\n"
                        f"{proc.stdout}\n{proc.stderr}", pytrace=False)
    yield Testbed.from_env_script()
    if not was_up:
        proc = script("down.sh")
        assert proc.returncode == 0, proc.stderr
