"""Which address kale listens on for workers on other hosts: settings and automatic choice.

On the test bed the login node has loopback, the bridge kaletb0 (10.251.0.1, the only
interface the nodes reach) and eth0 (an address no node reaches), and its host name
resolves to 127.0.0.1: the case where guessing goes wrong.
"""

from __future__ import annotations

import json
import socket
import sys

import dask.config
import pytest

from kale_ext import channel
from kale_ext._errors import ConfigError
from kale_ext.channel import ChannelServer, Message, new_key
from kale_ext.clusters._network import contact_host, node_addresses
from tests.conftest import wait_for
from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed


@pytest.fixture
def on_testbed(testbed: Testbed, monkeypatch: pytest.MonkeyPatch) -> Testbed:
    monkeypatch.setenv("SLURM_CONF", testbed.env["SLURM_CONF"])
    return testbed


def test_the_host_name_leads_to_loopback_here(testbed: Testbed):
    # What makes the automatic choice matter on this machine.
    assert socket.gethostbyname(socket.gethostname()).startswith("127.")
    assert "kaletb0" in channel.interfaces()
    assert len([n for n, a in channel.interfaces().items() if not a[0].startswith("127.")]) > 1


def test_batch_kinds_choose_the_route_to_the_compute_nodes(on_testbed: Testbed):
    tb = on_testbed
    assert sorted(node_addresses("slurm", {"queue": "debug"})) == sorted(tb.nodes.values())
    assert contact_host("slurm", {}) == tb.login_addr
    assert contact_host("slurm", {"queue": "gpu"}) == tb.login_addr
    assert contact_host("local", {}) == "127.0.0.1"


def test_interface_and_channel_host_settings_take_names_or_addresses(on_testbed: Testbed):
    tb = on_testbed
    with dask.config.set({"kale.interface": "kaletb0"}):
        assert contact_host("slurm", {}) == tb.login_addr
        assert channel.channel_host() == tb.login_addr
        assert channel.channel_host(local=True) == "127.0.0.1"  # workers on this host
    with dask.config.set({"kale.interface": tb.login_addr}):
        assert contact_host("slurm", {}) == tb.login_addr
    assert contact_host("slurm", {"interface_host": "kaletb0"}) == tb.login_addr
    with dask.config.set({"kale.channel-host": "kaletb0"}):
        assert channel.channel_host() == tb.login_addr
        assert channel.channel_host(local=True) == tb.login_addr  # a setting wins
    with dask.config.set({"kale.channel-host": tb.login_addr}):
        assert channel.channel_host() == tb.login_addr


def test_no_clue_fails_naming_the_interfaces_it_saw(on_testbed: Testbed):
    # No compute nodes to route to, two outside interfaces, a host name on loopback.
    with pytest.raises(ConfigError) as err:
        channel.channel_host()
    text = str(err.value)
    for name, addrs in channel.interfaces().items():
        assert f"{name} {addrs[0]}" in text, text
    assert "kale.channel-host" in text and "kale.interface" in text
    assert "loopback" in text
    with pytest.raises(ConfigError, match=r"kale\.interface='nosuch0'.*kaletb0"), \
            dask.config.set({"kale.interface": "nosuch0"}):
        contact_host("slurm", {})


def test_a_node_reports_to_a_channel_on_the_bridge(on_testbed: Testbed):
    tb = on_testbed
    received: list[Message] = []

    def handler(messages: list[Message]) -> None:
        received.extend(messages)

    def reports() -> list[Message]:
        return [m for m in received if m.kind == "report"]

    key = new_key()
    host = channel.channel_host(peers=list(tb.nodes.values()))
    assert host == tb.login_addr
    with ChannelServer(key, handler, host=host) as server:
        assert server.address == f"tcp://{tb.login_addr}:{server.port}"
        code = f"""
import json, socket
from kale_ext.channel import ChannelClient
client = ChannelClient({server.address!r}, bytes.fromhex({key.hex()!r}), trial=7)
for step in range(3):
    client.send("report", {{"step": step, "node": socket.gethostname()}}, block=True, timeout=20)
client.close(timeout=10)
print(json.dumps("sent"))
"""
        out = tb.srun("-p", "debug", "-w", "node3", sys.executable, "-c", code, timeout=90)
        assert json.loads(out.strip().splitlines()[-1]) == "sent"
        wait_for(lambda: len(reports()) >= 3, 10, what="three reports from node3")
    assert [(m.trial, m.data["step"], m.data["node"]) for m in reports()] == [
        (7, 0, "node3"), (7, 1, "node3"), (7, 2, "node3")]
