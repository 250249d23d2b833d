"""registry.pid_alive: what a cluster's record is judged by when its owner may be gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from kale_ext import registry
from tests.conftest import wait_for

HOST = socket.gethostname()


def test_a_live_process_is_alive_and_an_exited_unreaped_one_is_not():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        assert registry.pid_alive(proc.pid, HOST) is True
        proc.stdin.close()  # it exits; until it is reaped it stays a zombie
        wait_for(lambda: registry.pid_alive(proc.pid, HOST) is False, 10, 0.05,
                 what="the exited child to count as gone")
        os.kill(proc.pid, 0)  # the zombie still holds its pid: only /proc tells
    finally:
        proc.wait(10)
    assert registry.pid_alive(proc.pid, HOST) is False


def test_a_process_on_another_host_cannot_be_judged():
    assert registry.pid_alive(os.getpid(), HOST + "-elsewhere") is None
