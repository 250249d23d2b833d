"""Dask and ipyparallel clusters whose workers run on the test bed's nodes.

The scheduler, the controller and the search's metric channel listen on the login
node's bridge address (the only one the nodes reach); every worker runs on its own
node with its own address, and the TLS certificate names the addresses that are dialled.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import dask.config
import psutil
import pytest

import kale_ext as kale
from kale_ext.clusters import Cluster
from tests.testbed.conftest import Testbed

pytestmark = pytest.mark.testbed

# Trials defined here travel by value: the nodes do not import the tests package.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

# A job takes 5 of a node's 8 cores, so no two workers share a node; each worker runs
# one task at a time all the same.
SPREAD = {"cores": 5, "worker_options": {"nthreads": 1}}


@pytest.fixture(scope="module")
def on_testbed(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """kale's clients (sbatch, squeue, the daemons) pointed at the test bed's Slurm."""
    state = tmp_path_factory.mktemp("kale-testbed-state")
    with pytest.MonkeyPatch.context() as mp, dask.config.set({"kale.state-dir": str(state)}):
        for name in ("SLURM_CONF", "SCRATCH"):
            mp.setenv(name, testbed.env[name])
        mp.setenv("DASK_KALE__STATE_DIR", str(state))
        mp.setenv("DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT", "1s")
        yield testbed


@pytest.fixture(scope="module")
def dask_nodes(on_testbed: Testbed) -> Iterator[Cluster]:
    cluster = kale.start_cluster("slurm", profile="slurm", workers=3, queue="debug",
                                 walltime="00:10:00", memory="1GiB", **SPREAD)
    yield cluster
    cluster.stop()


def _host(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


def _context(security: Path, *, client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(security / "ca.pem"))
    ctx.check_hostname = True  # what Dask leaves off: the certificate must name the address
    if client_cert:  # Dask's listeners ask every peer for its certificate
        ctx.load_cert_chain(str(security / "cert.pem"), str(security / "key.pem"))
    return ctx


def test_dask_workers_run_on_three_nodes_and_dial_the_login_nodes_bridge(dask_nodes, on_testbed):
    tb = on_testbed
    assert _host(dask_nodes.record.address) == tb.login_addr
    assert dask_nodes.record.address.startswith("tls://")
    workers = dask_nodes.status().workers
    hosts = {_host(w.address) for w in workers}
    assert len(workers) == 3 and len(hosts) == 3, workers
    assert hosts == set(tb.nodes.values())
    names = dask_nodes.run_on_workers(socket.gethostname)
    assert sorted(names.values()) == sorted(tb.nodes)
    # The scheduler's listening socket is on the bridge only, not on loopback or everywhere.
    daemon = psutil.Process(dask_nodes.record.owner_pid)
    port = int(dask_nodes.record.address.rsplit(":", 1)[1])
    listening = {c.laddr.ip for c in daemon.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert listening == {tb.login_addr}


def test_tls_certificate_names_the_scheduler_and_worker_addresses(dask_nodes, on_testbed):
    tb = on_testbed
    security = Path(dask_nodes.record.security or "")
    scheduler = (tb.login_addr, int(dask_nodes.record.address.rsplit(":", 1)[1]))
    # A node checks the scheduler's certificate against the address it dials.
    probe = f"""
import socket, ssl, sys
ctx = ssl.create_default_context(cafile={str(security / 'ca.pem')!r})
ctx.load_cert_chain({str(security / 'cert.pem')!r}, {str(security / 'key.pem')!r})
out = []
for name in ({tb.login_addr!r}, "10.251.0.250"):
    try:
        with socket.create_connection({scheduler!r}, 10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name):
                out.append("verified")
    except ssl.SSLCertVerificationError as exc:
        out.append("refused: " + exc.verify_message)
print("|".join(out))
"""
    out = tb.srun("-p", "debug", "-w", "node2", sys.executable, "-c", probe).strip()
    verified, wrong = out.split("|")
    assert verified == "verified"
    assert wrong.startswith("refused") and "mismatch" in wrong.lower(), wrong
    # The login node checks each worker's certificate against the worker's own address.
    ctx = _context(security)
    for worker in dask_nodes.status().workers:
        host, port = _host(worker.address), int(worker.address.rsplit(":", 1)[1])
        with socket.create_connection((host, port), 10) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.getpeercert() is not None


def report_where(config: dict) -> None:
    """A trial: three reports, each saying on which node and address it runs."""
    import socket
    import time

    for step in range(3):
        kale.report(step=step, score=config["x"] * step, node=socket.gethostname())
        time.sleep(0.3)


def test_search_trials_report_from_the_nodes(dask_nodes, on_testbed):
    tb = on_testbed
    search = kale.Search(report_where, {"x": kale.uniform(0, 1)}, metric="score", trials=6,
                         cluster=dask_nodes, seed=3).start()
    search.wait(180)
    assert search.channel_host == tb.login_addr
    frame = search.results()
    assert len(frame) == 6 and set(frame["state"]) == {"completed"}, frame
    rows = search.store.metrics()
    assert len(rows) == 18
    node_of_trial = {r.trial: r.values["node"] for r in rows}
    assert all(r.values["node"] == node_of_trial[r.trial] for r in rows)  # one node a trial
    assert set(node_of_trial.values()) <= set(tb.nodes)
    assert len(set(node_of_trial.values())) >= 2, node_of_trial
    # The driver's view of where each trial ran agrees with the trial's own.
    host_of_worker = {w.name: _host(w.address) for w in dask_nodes.status().workers}
    node_of_addr = {addr: node for node, addr in tb.nodes.items()}
    for record in search.store.trials():
        assert node_of_addr[host_of_worker[record.worker]] == node_of_trial[record.number]


def test_ipyparallel_engines_on_two_nodes_reach_the_controller_on_the_bridge(on_testbed):
    tb = on_testbed
    cluster = kale.start_cluster("slurm", backend="ipyparallel", profile="slurm", workers=2,
                                 queue="debug", walltime="00:10:00",
                                 job_extra=["--ntasks-per-node=1"])
    try:
        nodes = cluster.run_on_workers(socket.gethostname)
        assert len(set(nodes.values())) == 2 and set(nodes.values()) <= set(tb.nodes), nodes
        assert cluster.submit(pow, 2, 10).result(timeout=60) == 1024
        assert cluster.channel_host() == tb.login_addr
        security = Path(cluster.record.security or "") / "security"
        engine_file = next(security.glob("ipcontroller-*-engine.json"))
        info = json.loads(engine_file.read_text())
        assert info["interface"] == f"tcp://{tb.login_addr}", info
        # Every port the engines dial listens on the bridge address; loopback carries only
        # what ipyparallel's controller processes say among themselves.
        ports = {p for v in info.values() for p in (v if isinstance(v, list) else [v])
                 if isinstance(p, int) and not isinstance(p, bool)}
        controller = psutil.Process(cluster.record.owner_pid)
        listening = {c.laddr.port: c.laddr.ip
                     for proc in [controller, *controller.children(recursive=True)]
                     for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        assert ports and {listening.get(p) for p in ports} == {tb.login_addr}, (ports, listening)
    finally:
        cluster.stop()
