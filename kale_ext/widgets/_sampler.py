"""Resource samples taken on a worker: CPU, memory and, through NVML, GPUs.

``sample_resources`` is sent to every worker with ``Cluster.run_on_workers``; it only
needs psutil, and NVML (``pynvml``, from nvidia-ml-py) when the worker has GPUs.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

_PROCESSES: dict[int, Any] = {}  # kept so cpu_percent measures since the last sample


def gpu_samples(nvml: Any = None) -> list[dict[str, Any]]:
    """Utilisation and memory of every GPU NVML sees; ``[]`` without NVML or GPUs.

    ``nvml`` is the ``pynvml`` module (imported here when None); tests pass a fake.
    """
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return []
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception:  # no driver, no GPU: NVMLError_LibraryNotFound, ...
        return []
    try:
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "util": float(util.gpu), "memory_used": int(mem.used),
                         "memory_total": int(mem.total)})
        return gpus
    finally:
        nvml.nvmlShutdown()


def sample_resources() -> dict[str, Any]:
    """One sample of this worker's host and process.

    CPU percentages are since the previous call in the same process (psutil keeps
    the last reading), so a sampler called every few seconds gets averages.
    """
    import psutil

    from kale_ext.trial import bound_gpus

    vm = psutil.virtual_memory()
    proc = _PROCESSES.setdefault(os.getpid(), psutil.Process())
    bound = bound_gpus()
    return {
        "time": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cpu": psutil.cpu_percent(interval=None),
        "cpus": psutil.cpu_count() or 1,
        "process_cpu": proc.cpu_percent(interval=None),
        "memory": float(vm.percent),
        "memory_used": int(vm.total - vm.available),
        "memory_total": int(vm.total),
        "rss": int(proc.memory_info().rss),
        # A worker process bound to some of the node's GPUs (gpus_per_worker) shows those.
        "bound_gpus": bound,
        "gpus": [g for g in gpu_samples() if not bound or str(g["index"]) in bound],
    }
