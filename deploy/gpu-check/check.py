"""What kale does on this machine's GPUs, with figures: run by deploy/gpu-check/run.sh.

Checks, in order, printing what each found:

1. torch and CUDA: versions, the GPUs torch sees, NCCL's version;
2. ``kale.device()`` on CUDA, and a matmul and a training step's throughput on it;
3. torch DDP over nccl through ``kale.train_distributed`` on a local Dask cluster: one
   rank, and two ranks when there are two GPUs (a step's throughput, an allreduce's time);
4. Horovod over NCCL the same way, when a Horovod built with NCCL is installed.

Exit status: 0 when every check that ran passed, 1 when one failed, 2 when there is no
GPU to check (nothing else runs then). ``--cpu`` runs the same steps on the CPU over gloo,
to try this script on a machine without a GPU; its figures say nothing about GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

RESULTS: list[tuple[str, str, str]] = []  # (check, "ok" | "FAILED" | "skipped", detail)


def say(text: str) -> None:
    print(f"gpu-check: {text}", flush=True)


def record(check: str, status: str, detail: str) -> None:
    RESULTS.append((check, status, detail))
    say(f"[{status}] {check}: {detail}")


def attempt(check: str, fn: Callable[[], str]) -> bool:
    """Run one check; record its figures, or its failure with the traceback."""
    say(f"--- {check}")
    try:
        detail = fn()
    except Exception as e:
        traceback.print_exc()
        record(check, "FAILED", f"{type(e).__name__}: {e}")
        return False
    record(check, "ok", detail)
    return True


# -- 1. torch and CUDA ------------------------------------------------------------------

def describe_torch(cpu: bool) -> int:
    """Print what torch sees; the number of GPUs (0: nothing to check)."""
    import torch

    say(f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}")
    say(f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none (CPU build)'}"
        f", cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else '-'}")
    say(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
    if cpu:
        say("--cpu: running every step on the CPU over gloo; the figures are not a GPU's")
        return 1
    if torch.version.cuda is None:
        say("this torch is a CPU-only build, so no GPU can be used. Install a CUDA build "
            "(on Linux x86_64, `pip install torch==2.13.0` from PyPI is one).")
        return 0
    if not torch.cuda.is_available():
        say(f"torch was built for CUDA {torch.version.cuda} but finds no usable GPU: no NVIDIA "
            "driver, a driver older than that CUDA, or CUDA_VISIBLE_DEVICES hiding them.")
        return 0
    count = torch.cuda.device_count()
    for i in range(count):
        p = torch.cuda.get_device_properties(i)
        say(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability "
            f"{p.major}.{p.minor}, {p.multi_processor_count} SMs")
    try:
        import torch.cuda.nccl

        nccl: Any = torch.cuda.nccl.version()
    except Exception as e:  # a build without NCCL
        nccl = f"unknown ({type(e).__name__}: {e})"
    say(f"NCCL {'.'.join(map(str, nccl)) if isinstance(nccl, tuple) else nccl}; "
        f"torch.distributed nccl available: {torch.distributed.is_nccl_available()}")
    return count


# -- 2. kale.device() and single-GPU throughput ----------------------------------------------

def check_device(cpu: bool) -> str:
    import torch

    import kale_ext as kale

    device = kale.device()
    want = "cpu" if cpu else "cuda"
    if device.type != want:
        raise AssertionError(f"kale.device() is {device}, expected a {want} device")
    name = "cpu" if cpu else torch.cuda.get_device_name(device)
    return f"kale.device() = {device} ({name})"


def _timed(fn: Callable[[], Any], device: Any, repeat: int) -> float:
    """Seconds per call of ``fn`` on ``device``, after a warm-up."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


def check_matmul(cpu: bool) -> str:
    import torch

    import kale_ext as kale

    device = kale.device()
    n = 1024 if cpu else 8192
    figures = []
    dtypes = [torch.float32] if cpu else [torch.float32, torch.bfloat16, torch.float16]
    for dtype in dtypes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        def product(a: Any = a, b: Any = b) -> Any:
            return a @ b

        seconds = _timed(product, device, 3 if cpu else 20)
        figures.append(f"{str(dtype).removeprefix('torch.')} {2 * n**3 / seconds / 1e12:.3g}")
    tf32 = "" if cpu else f" (TF32 for float32: {torch.backends.cuda.matmul.allow_tf32})"
    return f"{n}x{n} matmul TFLOP/s: {', '.join(figures)}{tf32}"


def train_step_rate(device: Any, batch: int, steps: int) -> float:
    """Samples a second of a small CNN's training step (forward, backward, SGD) on ``device``."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 128, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.Conv2d(128, 256, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(256, 10),
    ).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return batch / _timed(step, device, steps)


def check_train_step(cpu: bool) -> str:
    import kale_ext as kale

    batch = 32 if cpu else 256
    rate = train_step_rate(kale.device(), batch, 3 if cpu else 50)
    return f"CNN training step on {kale.device()}: {rate:,.0f} samples/s (batch {batch}, 32x32)"


# -- 3. and 4. distributed, through kale --------------------------------------------------------

def rank_figures(config: dict[str, Any]) -> dict[str, Any]:
    """One rank of a distributed check: the backend, a DDP step's rate, an allreduce's time."""
    import torch

    import kale_ext as kale

    device = kale.device()
    if device.type == "cuda":
        torch.cuda.set_device(device)  # Horovod's NCCL works on the current device
    mib = config["mib"]
    tensor = torch.ones(mib * 2**20 // 4, device=device)
    if config["engine"] == "horovod":
        import horovod.torch as hvd

        hvd.init()
        backend = "horovod " + ("nccl" if hvd.nccl_built() and device.type == "cuda" else "gloo")

        def allreduce() -> None:
            hvd.allreduce(tensor, op=hvd.Sum)
    else:
        import torch.distributed as dist

        backend = dist.get_backend()

        def allreduce() -> None:
            dist.all_reduce(tensor)
    seconds = _timed(allreduce, device, config["repeat"])
    rate = None
    if config["engine"] == "torch":
        from torch.nn.parallel import DistributedDataParallel

        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.ReLU(),
                                  torch.nn.Linear(4096, 1024)).to(device)
        ddp = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                      else None)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
        x = torch.randn(config["batch"], 1024, device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            ddp(x).square().mean().backward()
            opt.step()

        rate = config["batch"] / _timed(step, device, config["repeat"])
    check = torch.ones(1, device=device) * (kale.rank() + 1)
    if config["engine"] == "horovod":
        total = float(hvd.allreduce(check, op=hvd.Sum))
        hvd.shutdown()
    else:
        torch.distributed.all_reduce(check)
        total = float(check)
    return {"rank": kale.rank(), "size": kale.world_size(), "device": str(device),
            "backend": backend, "allreduce_ms": seconds * 1e3, "samples_per_s": rate,
            "sum": total}


def check_distributed(engine: str, ranks: int, cpu: bool) -> str:
    import kale_ext as kale

    cluster = kale.start_cluster("local", backend="dask", workers=ranks)
    try:
        config: dict[str, Any] = {"engine": engine, "mib": 1 if cpu else 256,
                                  "repeat": 3 if cpu else 20, "batch": 64 if cpu else 1024}
        run = kale.train_distributed(rank_figures, cluster, workers=ranks, engine=engine,
                                     config=config, timeout=120)
        out = run.wait(600)
    finally:
        cluster.stop()
    want = "gloo" if cpu else "nccl"
    expected_sum = ranks * (ranks + 1) / 2
    for o in out:
        if want not in o["backend"] or o["sum"] != expected_sum:
            raise AssertionError(f"rank {o['rank']}: backend {o['backend']!r} (expected "
                                 f"{want}), allreduce sum {o['sum']} (expected {expected_sum})")
    devices = sorted({o["device"] for o in out})
    if not cpu and len(devices) != ranks:
        raise AssertionError(f"{ranks} ranks shared devices {devices}")
    ms = max(o["allreduce_ms"] for o in out)
    mib = int(config["mib"])
    bus = 2 * (ranks - 1) / ranks * mib / 1024 / (ms / 1e3) if ranks > 1 else 0.0
    text = (f"{ranks} rank(s) on {', '.join(devices)}, {out[0]['backend']}: allreduce of "
            f"{mib} MiB {ms:.2f} ms" + (f" (bus bandwidth {bus:.1f} GiB/s)" if ranks > 1 else ""))
    rates = [o["samples_per_s"] for o in out if o["samples_per_s"]]
    if rates:
        text += f"; DDP MLP step {sum(rates):,.0f} samples/s over all ranks"
    return text


FIRST_STEP = """
import sys, torch, torch.distributed as dist
dist.init_process_group("gloo" if sys.argv[1] == "cpu" else "nccl")
device = torch.device("cpu") if sys.argv[1] == "cpu" else torch.device("cuda", 0)
x = torch.ones(1024, 1024, device=device)
y = (x @ x).sum().reshape(1)
dist.all_reduce(y)
print(float(y))
dist.destroy_process_group()
"""


def first_step(config: dict[str, Any]) -> dict[str, Any]:
    """Take a rank's first step: a matmul and an allreduce on its device (the script's twin)."""
    import torch

    import kale_ext as kale

    device = kale.device()
    x = torch.ones(1024, 1024, device=device)
    y = (x @ x).sum().reshape(1)
    torch.distributed.all_reduce(y)
    return {"device": str(device), "backend": torch.distributed.get_backend(),
            "value": float(y)}


def check_warm_launch(cpu: bool) -> str:
    """Launch to a first step's result, 1 rank: ``torchrun``, then kale cold and warm."""
    import subprocess

    import kale_ext as kale

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(FIRST_STEP)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=1",
                    f.name, "cpu" if cpu else "cuda"], check=True, capture_output=True,
                   timeout=600)
    torchrun = time.perf_counter() - start
    cluster = kale.start_cluster("local", backend="dask", workers=1)
    times = []
    try:
        for _ in range(3):  # cold, then warm twice
            start = time.perf_counter()
            [out] = kale.train_distributed(first_step, cluster, workers=1, engine="torch",
                                           config={}, timeout=120).wait(600)
            times.append(time.perf_counter() - start)
            want = "gloo" if cpu else "nccl"
            if out["backend"] != want or out["value"] != 1024.0**3 or \
                    ("cuda" not in out["device"]) != cpu:
                raise AssertionError(f"run {len(times)}: {out} (expected {want} on "
                                     f"{'cpu' if cpu else 'cuda'}, value {1024 ** 3})")
    finally:
        cluster.stop()
    cold, warm = times[0], min(times[1:])
    return (f"1 rank on {out['device']}: torchrun {torchrun:.2f} s; kale first run "
            f"{cold:.2f} s ({cold / torchrun:.2f}x), warm {warm:.2f} s "
            f"({warm / torchrun:.2f}x)")


def horovod_state(cpu: bool) -> str | None:
    """Why Horovod's check cannot run (None when it can)."""
    try:
        import horovod.torch as hvd
    except ImportError as e:
        return f"horovod.torch is not importable ({e}); run.sh says why it was not built"
    if not hvd.gloo_built():
        return "this Horovod has no gloo controller, which kale launches ranks with"
    if not cpu and not hvd.nccl_built():
        return "this Horovod was built without NCCL (HOROVOD_GPU_OPERATIONS=NCCL)"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true",
                        help="run the steps on the CPU over gloo (tries the script; no GPU)")
    parser.add_argument("--no-horovod", action="store_true",
                        help="leave the Horovod check out (run.sh runs it after its build)")
    parser.add_argument("--only-horovod", action="store_true",
                        help="run only the Horovod check (after run.sh built Horovod)")
    args = parser.parse_args()

    import dask.config

    # Clusters and runs of this check stay out of the user's kale state.
    state = tempfile.mkdtemp(prefix="kale-gpu-check-")
    dask.config.set({"kale.state-dir": state})

    gpus = describe_torch(args.cpu)
    if gpus == 0:
        say("RESULT: no GPU to check on this machine (see above); nothing else was run.")
        return 2
    on = "CPU" if args.cpu else "CUDA"
    over = "gloo" if args.cpu else "nccl"
    if not args.only_horovod:
        attempt(f"kale.device() on {on}", lambda: check_device(args.cpu))
        attempt("matmul throughput", lambda: check_matmul(args.cpu))
        attempt("training step throughput", lambda: check_train_step(args.cpu))
        attempt(f"DDP over {over}, 1 rank", lambda: check_distributed("torch", 1, args.cpu))
        attempt(f"launch to first step over {over}, cold and warm",
                lambda: check_warm_launch(args.cpu))
        if gpus > 1 or args.cpu:
            attempt(f"DDP over {over}, 2 ranks",
                    lambda: check_distributed("torch", 2, args.cpu))
        else:
            record(f"DDP over {over}, 2 ranks", "skipped", "this machine has one GPU")
    why = None if args.no_horovod else horovod_state(args.cpu)
    if args.no_horovod:
        pass  # run.sh builds Horovod where it can, then runs --only-horovod
    elif why:
        record(f"Horovod over {over.upper()}", "skipped", why)
    else:
        attempt(f"Horovod over {over.upper()}, 1 rank",
                lambda: check_distributed("horovod", 1, args.cpu))
        if gpus > 1 or args.cpu:
            attempt(f"Horovod over {over.upper()}, 2 ranks",
                    lambda: check_distributed("horovod", 2, args.cpu))
        else:
            record(f"Horovod over {over.upper()}, 2 ranks", "skipped",
                   "this machine has one GPU")
    say("=== summary")
    for check, status, detail in RESULTS:
        say(f"{status:8} {check}: {detail}")
    failed = [c for c, s, _ in RESULTS if s == "FAILED"]
    print("gpu-check-json: " + json.dumps([{"check": c, "status": s, "detail": d}
                                           for c, s, d in RESULTS]), flush=True)
    say(f"RESULT: {'FAILED: ' + ', '.join(failed) if failed else 'all checks that ran passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
