"""Training functions for the distributed tests; shipped to workers by value (conftest)."""

from __future__ import annotations

import time

import kale_ext as kale


def data(n=8, seed=1):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def model():
    import torch

    torch.manual_seed(0)  # the same initial weights on every rank and in the reference
    return torch.nn.Linear(4, 1)


def reference_step(lr=0.1):
    """One single-process SGD step on the full batch: what every rank must end with."""
    import torch

    net = model()
    x, y = data()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    torch.nn.functional.mse_loss(net(x), y).backward()
    opt.step()
    return [p.detach().clone() for p in net.parameters()]


def ddp_step(config):
    """One DistributedDataParallel step on this rank's shard of the batch."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    net = model()
    ddp = DistributedDataParallel(net)
    x, y = data()
    xs, ys = kale.shard(x), kale.shard(y)
    opt = torch.optim.SGD(ddp.parameters(), lr=config["lr"])
    loss = torch.nn.functional.mse_loss(ddp(xs), ys)
    loss.backward()
    opt.step()
    kale.report(step=0, loss=float(loss), samples=len(xs))
    return [p.detach().clone() for p in net.parameters()]


def horovod_step(config):
    """The same step with Horovod's DistributedOptimizer."""
    import horovod.torch as hvd
    import torch

    hvd.init()
    net = model()
    hvd.broadcast_parameters(net.state_dict(), root_rank=0)
    x, y = data()
    xs, ys = kale.shard(x), kale.shard(y)
    opt = hvd.DistributedOptimizer(torch.optim.SGD(net.parameters(), lr=config["lr"]),
                                   named_parameters=net.named_parameters())
    loss = torch.nn.functional.mse_loss(net(xs), ys)
    loss.backward()
    opt.step()
    total = hvd.allreduce(torch.tensor([float(hvd.rank() + 1)]), op=hvd.Sum)
    kale.report(step=0, loss=float(loss), total=float(total))
    assert (hvd.rank(), hvd.size(), hvd.local_rank()) == (kale.rank(), kale.world_size(),
                                                          kale.local_rank())
    hvd.shutdown()
    return [p.detach().clone() for p in net.parameters()]


def allreduce(config):
    """Sum, max and all-gather of rank-dependent tensors; the environment kale set."""
    import os

    import torch
    import torch.distributed as dist

    r = kale.rank()
    t = torch.tensor([float(r + 1)])
    dist.all_reduce(t)
    m = torch.tensor([float(r * 10)])
    dist.all_reduce(m, op=dist.ReduceOp.MAX)
    gathered = [torch.zeros(1) for _ in range(kale.world_size())]
    dist.all_gather(gathered, torch.tensor([float(r)]))
    kale.report(step=0, total=float(t))
    env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                      "MASTER_PORT")}
    return {"sum": float(t), "max": float(m), "gathered": [float(g) for g in gathered],
            "env": env, "backend": dist.get_backend()}


def sharded_epochs(config):
    """Which samples this rank reads in each epoch of a shuffled, sharded DataLoader."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    loader = kale.shard(DataLoader(TensorDataset(torch.arange(config["n"])), batch_size=3,
                                   shuffle=True), seed=5)
    seen = []
    for epoch in range(config["epochs"]):
        loader.sampler.set_epoch(epoch)
        seen.append([int(v) for (batch,) in loader for v in batch])
        kale.report(epoch=epoch, samples=len(seen[-1]))
    return seen


def steps_forever(config):
    """Allreduce and report every step until stopped; rank 1 fails first if told to."""
    import torch
    import torch.distributed as dist

    for step in range(10_000):
        t = torch.ones(1)
        dist.all_reduce(t)
        kale.report(step=step, total=float(t))
        if config.get("fail_rank") == kale.rank() and step == config.get("fail_at", 3):
            raise ValueError(f"boom on rank {kale.rank()} at step {step}")
        time.sleep(config.get("sleep", 0.05))


def rank1_hangs(config):
    """Rank 1 never joins the collective rank 0 waits in: only an abort ends the run."""
    import torch
    import torch.distributed as dist

    kale.report(step=0, started=1)
    if kale.rank() == 1:
        time.sleep(3600)
    dist.all_reduce(torch.ones(1))


def search_trial(config):
    """A distributed search trial: every rank reports; the loss depends on lr."""
    import torch
    import torch.distributed as dist

    for epoch in range(1, 4):
        t = torch.tensor([config["lr"] * epoch])
        dist.all_reduce(t)
        kale.report(epoch=epoch, loss=float(t) / kale.world_size(), rank_seen=kale.rank(),
                    world=kale.world_size())
    return {"world": kale.world_size()}


def checkpointed(config):
    """Steps with a checkpoint each; rank 1 dies once (a marker file says it did)."""
    import os

    import torch
    import torch.distributed as dist

    state = kale.load_checkpoint()
    first = state["step"] + 1 if state else 0
    for step in range(first, config["steps"]):
        t = torch.ones(1)
        dist.all_reduce(t)
        kale.save_checkpoint({"step": step}, step)
        kale.report(step=step, total=float(t), resumed_from=first)
        if kale.rank() == 1 and step == 2 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            os._exit(3)  # the process dies, as if killed
    return first


def seeded_training(config):
    """A few seeded DDP steps of a small MLP; the final weights."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(config["seed"])
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    ddp = DistributedDataParallel(net)
    g = torch.Generator().manual_seed(config["seed"] + 1)
    x = torch.randn(64, 8, generator=g)
    y = x.sum(dim=1, keepdim=True).sin() + 0.05 * torch.randn(64, 1, generator=g)
    xs, ys = kale.shard(x), kale.shard(y)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    for step in range(config["steps"]):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(ddp(xs), ys)
        loss.backward()
        opt.step()
        kale.report(step=step, loss=float(loss))
    return [p.detach().clone() for p in net.parameters()]


def leaks(config):
    """What this process holds from before: a global, a variable, unseeded draws."""
    import os
    import random
    import sys

    import numpy as np
    import torch

    package = sys.modules["kale_ext.training"]  # imported before any run, in every rank
    seen = {"global": getattr(package, "_kale_test_leak", None),
            "env": os.environ.get("KALE_TEST_LEAK"),
            "torch": float(torch.rand(1)), "numpy": float(np.random.rand()),
            "random": random.random(), "threads": torch.get_num_threads(),
            "grad": torch.is_grad_enabled()}
    package._kale_test_leak = 1
    os.environ["KALE_TEST_LEAK"] = "1"
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    kale.report(step=0, seen=1.0)
    return seen


def cached_data(config):
    """Load each of config["keys"] with kale.cached; the loader logs its calls to a file.

    With ``mutate`` the rank then changes its copy in place (a later run must not see it).
    """
    import os

    import torch

    def loader(key):
        with open(config["calls"], "a") as f:
            f.write(f"{key} {os.getpid()}\n")
        return {"key": key, "data": torch.full((3,), float(len(key)))}

    seen = {}
    for key in config["keys"]:
        value = kale.cached(key, lambda key=key: loader(key))
        seen[key] = (value["key"], value["data"].tolist())
        if config.get("mutate"):
            value["data"].add_(100.0)
            value["key"] = "changed"
    return seen


def cached_trial(config):
    """A search trial that loads its data with kale.cached."""
    import os

    def loader():
        with open(config["calls"], "a") as f:
            f.write(f"{config['key']} {os.getpid()}\n")
        return [config["key"]] * 3

    value = kale.cached(config["key"], loader)
    kale.report(step=1, loss=config["x"], seen=value[0])


def quick_trial(config):
    """A search trial that reports once, after a short first batch."""
    time.sleep(config.get("batch", 0.2))
    kale.report(step=1, loss=config["x"])
