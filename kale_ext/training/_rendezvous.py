"""Rendezvous: where each rank runs, which rank is which, and how they find each other.

Before any rank starts, every chosen worker is probed (:func:`probe`): its host name,
the address and network interface through which it reaches the kernel, its GPUs (those
it holds and those torch can use), and a free port. Ranks are then numbered so that
ranks of one host are contiguous (:func:`assign`), and rank 0's address and free port
become ``MASTER_ADDR`` and ``MASTER_PORT`` (torch) while Horovod's ranks meet at a gloo
rendezvous server in the kernel (:mod:`._horovod`).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

HOLD_S = 600.0  # a held port whose rank never came is closed after this long

# Listening sockets bound by probes in this worker, by port, with when they were bound:
# rank 0's process takes its socket over, so the port cannot be lost in between.
_held: dict[int, tuple[socket.socket, float]] = {}
_held_lock = threading.Lock()


def take_listener(port: int | None) -> socket.socket | None:
    """Return the listening socket a probe of this worker holds on ``port`` (and forget it).

    None when there is none (another worker's probe, or it expired).
    """
    if port is None:
        return None
    with _held_lock:
        held = _held.pop(int(port), None)
    return held[0] if held is not None else None


def _hold_port(address: str) -> int:
    """Bind and listen on a free port of ``address``; keep the socket until a rank takes it."""
    now = time.monotonic()
    with _held_lock:
        for port, (old, since) in list(_held.items()):
            if now - since > HOLD_S:
                old.close()
                del _held[port]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((address, 0))
        s.listen(128)
    except OSError:
        s.close()
        raise
    port = int(s.getsockname()[1])
    with _held_lock:
        _held[port] = (s, now)
    return port


def probe(target_host: str, hold: bool = False, warm: bool = False) -> dict[str, Any]:
    """Describe the worker this runs on; runs as a task on every chosen worker.

    ``target_host`` is the kernel's metric-channel address: the local address of the
    route to it is one the other ranks can reach too (all of them reach the kernel).
    With ``hold``, the free port stays bound and listening in this worker until
    :func:`take_listener` takes it: rank 0's torch store then listens on that very
    socket, so no other process can take the port meanwhile. With ``warm``, the
    worker's zygote (:mod:`._zygote`) is started now if it is not running, so that its
    imports overlap the rest of the launch.
    """
    import os

    if warm:
        from kale_ext.training._zygote import zygote

        zygote()

    def route_address(host: str) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((host, 9))  # UDP connect sends nothing; it only picks a route
                return str(s.getsockname()[0])
            except OSError:  # no route: the host name's address, unless it is loopback
                by_name = socket.gethostbyname(socket.gethostname())
                if not by_name.startswith("127."):
                    return by_name
                import psutil

                return next((a.address for addrs in psutil.net_if_addrs().values()
                             for a in addrs if a.family == socket.AF_INET
                             and not a.address.startswith("127.")), by_name)

    def interface_of(address: str) -> str:
        try:
            import psutil

            for name, addrs in psutil.net_if_addrs().items():
                if any(a.family == socket.AF_INET and a.address == address for a in addrs):
                    return str(name)
        except ImportError:
            pass
        return "lo" if address.startswith("127.") else ""

    def free_port(address: str) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            return int(s.getsockname()[1])

    def visible_gpus() -> int:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
            return 0 if visible.strip() in ("", "NoDevFiles") else len(ids)
        try:
            return len(os.listdir("/proc/driver/nvidia/gpus"))
        except OSError:
            return 0

    def usable_gpus(declared: int) -> int:
        # GPUs torch can drive here: a job may hold GPUs (CUDA_VISIBLE_DEVICES set) that a
        # CPU-only torch, or a node without a driver, cannot use; nccl would fail there.
        if not declared:
            return 0
        try:
            import torch
        except ImportError:
            return 0
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0

    address = route_address(target_host)
    gpus = visible_gpus()
    return {"hostname": socket.gethostname(), "address": address,
            "interface": interface_of(address),
            "port": _hold_port(address) if hold else free_port(address),
            "gpus": gpus, "cuda": usable_gpus(gpus), "pid": os.getpid()}


@dataclass(frozen=True)
class RankInfo:
    """Where one rank sits: its numbers in the whole run and on its host."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    cross_rank: int
    cross_size: int
    hostname: str


def assign(hostnames: list[str]) -> tuple[list[int], list[RankInfo]]:
    """Assign ranks to the workers on ``hostnames``.

    The ranks of a host are contiguous, hosts in order of first appearance (so the first
    worker is rank 0).

    Returns the worker index of each rank, and each rank's :class:`RankInfo`.
    ``cross_rank`` is the host's index among hosts that have a rank with the same
    local rank, and ``cross_size`` how many such hosts there are (Horovod's meaning).
    """
    hosts = list(dict.fromkeys(hostnames))
    order = sorted(range(len(hostnames)), key=lambda i: hosts.index(hostnames[i]))
    size = len(hostnames)
    infos: list[RankInfo] = []
    local_sizes = {h: hostnames.count(h) for h in hosts}
    for r, i in enumerate(order):
        host = hostnames[i]
        local = sum(1 for j in order[:r] if hostnames[j] == host)
        peers = [h for h in hosts if local_sizes[h] > local]
        infos.append(RankInfo(r, size, local, local_sizes[host], peers.index(host), len(peers),
                              host))
    return order, infos


def torch_env(info: RankInfo, master_addr: str, master_port: int) -> dict[str, str]:
    """Return the environment torchrun gives a rank (``init_method="env://"`` reads it)."""
    return {
        "RANK": str(info.rank), "WORLD_SIZE": str(info.size),
        "LOCAL_RANK": str(info.local_rank), "LOCAL_WORLD_SIZE": str(info.local_size),
        "GROUP_RANK": str(info.cross_rank), "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }


def horovod_env(info: RankInfo, rendezvous_addr: str, rendezvous_port: int,
                interface: str, cycle_time_ms: float | None = None) -> dict[str, str]:
    """Return the environment ``horovodrun --gloo`` gives a rank.

    That is the one of horovod/runner/gloo_run.py, plus the torch names so that
    ``kale.rank()`` reads the same everywhere, and ``HOROVOD_CYCLE_TIME`` when given.
    """
    env = {
        "HOROVOD_HOSTNAME": info.hostname, "HOROVOD_RANK": str(info.rank),
        "HOROVOD_SIZE": str(info.size), "HOROVOD_LOCAL_RANK": str(info.local_rank),
        "HOROVOD_LOCAL_SIZE": str(info.local_size), "HOROVOD_CROSS_RANK": str(info.cross_rank),
        "HOROVOD_CROSS_SIZE": str(info.cross_size),
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": rendezvous_addr,
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(rendezvous_port),
        "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo",
        "RANK": str(info.rank), "WORLD_SIZE": str(info.size),
        "LOCAL_RANK": str(info.local_rank), "LOCAL_WORLD_SIZE": str(info.local_size),
    }
    if cycle_time_ms is not None:
        env["HOROVOD_CYCLE_TIME"] = str(cycle_time_ms)
    if interface:
        env["HOROVOD_GLOO_IFACE"] = interface
        env["NCCL_SOCKET_IFNAME"] = interface
    return env
