"""What the launch benchmarks share: the first-step script, its launchers, the timing loop.

Every launcher runs the same script's ``first_step``: join the process group (or
``hvd.init()``), allreduce once, write the time. The figure is the time from the launch
call to the later of the two ranks' first step.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

import kale_ext as kale

BIN = Path(sys.executable).parent

SCRIPT = textwrap.dedent('''
    import os, sys, time

    def first_step(config):
        import torch
        if config["engine"] == "torch":
            import torch.distributed as dist
            if not dist.is_initialized():  # under torchrun; kale has set it up already
                dist.init_process_group("gloo")
            dist.all_reduce(torch.ones(1))
            rank = dist.get_rank()
        else:
            import horovod.torch as hvd
            hvd.init()
            hvd.allreduce(torch.ones(1))
            rank = hvd.rank()
        stamp = time.time()
        with open(os.path.join(config["out"], f"rank{rank}"), "w") as f:
            f.write(repr(stamp))
        return stamp

    if __name__ == "__main__":
        first_step({"engine": sys.argv[1], "out": sys.argv[2]})
        if sys.argv[1] == "torch":
            import torch.distributed as dist
            dist.barrier()  # rank 0 holds the store: no rank may leave while a peer talks
            dist.destroy_process_group()
''')


def load_script(folder: Path) -> tuple[Path, ModuleType]:
    """Write the script to ``folder``; return its path and the module, shipped by value."""
    path = folder / "first_step.py"
    path.write_text(SCRIPT)
    spec = importlib.util.spec_from_file_location("kale_bench_first_step", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)  # workers cannot import it by name
    return path, module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stamps(out: str) -> float:
    return max(float(Path(out, f"rank{r}").read_text()) for r in (0, 1))


def launcher(engine: str, path: Path, *, srun: bool = False) -> Callable[[], float]:
    """Return a function that runs ``torchrun`` / ``horovodrun --gloo`` once; its seconds.

    ``srun``: torchrun as one task of a new Slurm job step (``srun -n1 -c2``), the way
    a user without kale runs it on the cluster each time.
    """
    def run() -> float:
        out = tempfile.mkdtemp(prefix="kale-bench-")
        if engine == "torch":
            cmd = [str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-addr",
                   "127.0.0.1", "--master-port", str(free_port()), str(path), engine, out]
        else:
            cmd = [str(BIN / "horovodrun"), "--gloo", "-np", "2", "-H", "localhost:2",
                   sys.executable, str(path), engine, out]
        if srun:
            cmd = [shutil.which("srun") or "srun", "-N1", "-n1", "-c2", "-p", "debug",
                   "-t", "5", *cmd]
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"})
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n" \
                                     f"{proc.stderr[-3000:]}"
        return _stamps(out) - start

    return run


def kale_run(engine: str, module: ModuleType, cluster: Any, *,
             warm: bool = True) -> tuple[float, dict[str, float]]:
    """Run ``first_step`` once with ``kale.train_distributed``; seconds and run.timings."""
    out = tempfile.mkdtemp(prefix="kale-bench-")
    start = time.time()
    run = kale.train_distributed(module.first_step, cluster, workers=2, engine=engine,
                                 config={"engine": engine, "out": out}, warm=warm)
    run.wait(300)
    run.store.close()
    return _stamps(out) - start, run.timings


def side_by_side(rounds: int,
                 measures: dict[str, Callable[[], float]] | list[tuple[str, Callable[[], float]]],
                 *, between: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Run the measures in turn, ``rounds`` times; their seconds by name.

    Rounds alternate the order, so that drift in the machine's load spreads over every
    side (give one round to keep an order, e.g. a cold run before warm ones). A name
    may come more than once in a list. ``between`` runs before each measure, untimed
    (e.g. to wait for an empty Slurm queue).
    """
    steps = list(measures.items()) if isinstance(measures, dict) else list(measures)
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    for i in range(rounds):
        for name, measure in steps if i % 2 == 0 else steps[::-1]:
            if between is not None:
                between()
            times[name].append(measure())
    return times


def spread(xs: list[float]) -> str:
    """``median (min-max)`` of ``xs``, two decimals."""
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"
