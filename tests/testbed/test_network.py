"""Compute nodes are network namespaces: own addresses, a bridge to the login node."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest

from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed

# The node's IPv4 addresses other than loopback, and who it says it is.
WHO_AM_I = ('echo "$SLURMD_NODENAME $(hostname) '
            '$(ip -4 -o addr show scope global | awk \'{print $4}\' | paste -sd, -)"')


def test_srun_runs_on_three_nodes_each_seeing_only_its_own_address(testbed: Testbed):
    out = testbed.srun("-N3", "-l", "bash", "-c", WHO_AM_I)
    seen = {}
    for line in out.splitlines():
        _rank, node, hostname, addrs = line.split()
        assert hostname == node, line
        seen[node] = addrs
    assert seen == {node: f"{addr}/24" for node, addr in testbed.nodes.items()}


def test_login_node_answers_on_the_bridge_and_its_loopback_is_out_of_reach(testbed: Testbed):
    bridge = socket.create_server((testbed.login_addr, 0))
    loopback = socket.create_server(("127.0.0.1", 0))
    bridge_port, loop_port = bridge.getsockname()[1], loopback.getsockname()[1]
    assert loop_port != 6828  # the node's own slurmd listens there on all addresses

    def greet() -> None:
        conn, _ = bridge.accept()
        with conn:
            conn.sendall(b"login node")

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    probe = f"""
import json, socket
out = {{}}
with socket.create_connection(({testbed.login_addr!r}, {bridge_port}), timeout=10) as s:
    out["bridge"] = s.recv(100).decode()
try:
    socket.create_connection(("127.0.0.1", {loop_port}), timeout=10).close()
    out["loopback"] = "connected"
except OSError as exc:
    out["loopback"] = type(exc).__name__
print(json.dumps(out))
"""
    try:
        out = testbed.srun("-w", "node2", sys.executable, "-c", probe)
    finally:
        bridge.close()
        loopback.close()
    assert json.loads(out) == {"bridge": "login node", "loopback": "ConnectionRefusedError"}


def test_nodes_reach_each_other_across_the_bridge(testbed: Testbed):
    node1 = testbed.nodes["node1"]
    server_code = f"""
import socket
with socket.create_server(({node1!r}, 0)) as srv:
    print(srv.getsockname()[1], flush=True)
    conn, peer = srv.accept()
    with conn:
        conn.sendall(peer[0].encode())
"""
    server = subprocess.Popen(["srun", "-w", "node1", sys.executable, "-c", server_code],
                              stdout=subprocess.PIPE, text=True, env=testbed.env)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client_code = (f"import socket; s = socket.create_connection(({node1!r}, {port}), 10);"
                       f" print(s.recv(100).decode())")
        out = testbed.srun("-w", "node3", sys.executable, "-c", client_code)
        # node1 saw the connection come from node3's own address
        assert out.strip() == testbed.nodes["node3"]
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.wait()


def test_nodes_have_no_route_off_the_test_bed(testbed: Testbed):
    # A route lookup only: no packet leaves the node.
    proc = testbed.run("srun", "-w", "node1", "ip", "route", "get", "203.0.113.1", check=False)
    assert proc.returncode != 0
    assert "Network is unreachable" in proc.stderr
