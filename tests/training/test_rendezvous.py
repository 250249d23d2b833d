"""Rank numbering, environments, probing, backend choice and device placement.

No GPU on the test machines: the nccl / GPU placement path is checked against a mock
of ``torch.cuda`` (the only mock in these tests); everything else is real.
"""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import pytest
import torch

import kale_ext as kale
from kale_ext import ConfigError
from kale_ext.training import _rendezvous, _torch
from kale_ext.trial import TrialContext
from kale_ext.trial._context import _current


def test_ranks_of_a_host_are_contiguous():
    order, infos = _rendezvous.assign(["b", "a", "b", "c", "a"])
    assert order == [0, 2, 1, 4, 3]  # b's workers first (rank 0's host), then a, then c
    assert [i.hostname for i in infos] == ["b", "b", "a", "a", "c"]
    assert [i.local_rank for i in infos] == [0, 1, 0, 1, 0]
    assert [i.local_size for i in infos] == [2, 2, 2, 2, 1]
    # Horovod's cross ranks: local rank 0 lives on b, a, c; local rank 1 on b, a.
    assert [(i.cross_rank, i.cross_size) for i in infos] == [(0, 3), (0, 2), (1, 3), (1, 2),
                                                              (2, 3)]
    assert {i.size for i in infos} == {5}


def test_environments():
    _, infos = _rendezvous.assign(["h", "h"])
    env = _rendezvous.torch_env(infos[1], "10.0.0.1", 29500)
    assert env == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                   "GROUP_RANK": "0", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    hvd = _rendezvous.horovod_env(infos[0], "10.0.0.9", 4000, "eth0")
    assert hvd["HOROVOD_CONTROLLER"] == hvd["HOROVOD_CPU_OPERATIONS"] == "gloo"
    assert hvd["HOROVOD_GLOO_RENDEZVOUS_ADDR"] == "10.0.0.9"
    assert hvd["HOROVOD_GLOO_RENDEZVOUS_PORT"] == "4000"
    assert hvd["HOROVOD_GLOO_IFACE"] == "eth0"
    assert (hvd["HOROVOD_RANK"], hvd["HOROVOD_SIZE"], hvd["HOROVOD_LOCAL_SIZE"]) == ("0", "2", "2")
    assert "HOROVOD_CYCLE_TIME" not in hvd
    assert _rendezvous.horovod_env(infos[0], "h", 1, "", 5.0)["HOROVOD_CYCLE_TIME"] == "5.0"


def test_probe_finds_route_interface_and_a_free_port():
    info = _rendezvous.probe("127.0.0.1")
    assert info["address"] == "127.0.0.1"
    assert info["interface"] == "lo"
    assert info["hostname"] == socket.gethostname()
    with socket.socket() as s:  # the port is free: bind it
        s.bind(("127.0.0.1", info["port"]))


def test_probe_counts_visible_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert _rendezvous.probe("127.0.0.1")["gpus"] == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _rendezvous.probe("127.0.0.1")["gpus"] == 0


def test_backend_choice():
    assert _torch.choose_backend([0, 0]) == "gloo"
    assert _torch.choose_backend([1, 0]) == "gloo"
    assert _torch.choose_backend([4, 4]) == "nccl"
    assert _torch.choose_backend([4, 4], "gloo") == "gloo"
    with pytest.raises(ConfigError, match=r"have \[1, 0\] GPUs"):
        _torch.choose_backend([1, 0], "nccl")
    with pytest.raises(ConfigError, match="backend='mpi'"):
        _torch.choose_backend([0], "mpi")


class FakeCuda:
    """Stands in for torch.cuda: this machine has no GPU."""

    def __init__(self, count):
        self.count, self.current = count, None

    def device_count(self):
        return self.count

    def set_device(self, index):
        self.current = index


def test_nccl_pins_each_local_rank_to_its_gpu():
    cuda = FakeCuda(2)
    assert _torch.place_device("nccl", 3, cuda) == torch.device("cuda", 1)
    assert cuda.current == 1
    assert _torch.place_device("gloo", 3, FakeCuda(2)) == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no GPU"):
        _torch.place_device("nccl", 0, FakeCuda(0))


def test_device_helper_with_mocked_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert kale.device() == torch.device("cuda", 1)


def test_rank_helpers_read_env_and_context(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert (kale.rank(), kale.world_size(), kale.local_rank()) == (0, 1, 0)
    monkeypatch.setenv("HOROVOD_RANK", "2")
    monkeypatch.setenv("HOROVOD_SIZE", "4")
    monkeypatch.setenv("HOROVOD_LOCAL_RANK", "0")
    assert (kale.rank(), kale.world_size(), kale.local_rank()) == (2, 4, 0)
    ctx = TrialContext(trial=0, attempt=0, rank=3, config={}, checkpoint_dir=os.devnull,
                       extra={"world_size": 8, "local_rank": 1})
    token = _current.set(ctx)
    try:
        assert (kale.rank(), kale.world_size(), kale.local_rank()) == (3, 8, 1)
    finally:
        _current.reset(token)


def test_missing_horovod_says_how_to_install(monkeypatch):
    from kale_ext.training import _horovod

    real = _horovod.importlib.util.find_spec
    monkeypatch.setattr(_horovod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "horovod" else real(name, *a))
    with pytest.raises(ConfigError, match=r"horovod module.*deploy/horovod/build.sh"):
        _horovod.require_horovod()
    with pytest.raises(ConfigError, match="horovod module"):
        kale.train_distributed(print, SimpleNamespace(), workers=2, engine="horovod")


def test_a_held_probe_port_stays_bound_until_rank_zero_takes_it():
    info = _rendezvous.probe("127.0.0.1", hold=True)
    port = info["port"]
    with socket.socket() as s, pytest.raises(OSError):  # no other process can take it
        s.bind(("127.0.0.1", port))
    listener = _rendezvous.take_listener(port)
    assert listener is not None and listener.getsockname()[1] == port
    assert _rendezvous.take_listener(port) is None  # taken once
    with socket.create_connection(("127.0.0.1", port), timeout=5):  # it listens already
        pass
    listener.close()
    assert _rendezvous.take_listener(None) is None


def test_rank_zero_store_listens_on_the_held_socket(monkeypatch):
    import torch.distributed as dist

    port = _rendezvous.probe("127.0.0.1", hold=True)["port"]
    fd = _rendezvous.take_listener(port).detach()  # the store owns and closes it
    monkeypatch.setenv(_torch.LISTEN_FD_ENV, str(fd))
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port), "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    _torch.init_process_group("gloo", 30)
    try:
        t = torch.ones(1)
        dist.all_reduce(t)
        assert t.item() == 1.0
    finally:
        _torch.destroy_process_group()
