"""What runs on ipyparallel engines, and the futures that carry its results home.

ipyparallel ships plain functions by their code object, so these helpers import
everything they use inside their bodies. User functions travel as cloudpickle bytes,
which gives them the same reach as on a Dask worker (closures, module globals), and
their exceptions come back as themselves rather than as ``RemoteError``.
"""

from __future__ import annotations

from typing import Any

from kale_ext.clusters._base import NativeFuture


def describe() -> dict[str, Any]:
    """Host, cores, memory, batch job and engine set of the engine this runs on."""
    import os
    import socket

    env = os.environ
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    for var in ("SLURM_CPUS_PER_TASK", "PBS_NCPUS", "NSLOTS", "LSB_DJOB_NUMPROC"):
        if env.get(var, "").isdigit():
            cores = int(env[var])
            break
    memory = 0
    if env.get("SLURM_MEM_PER_CPU", "").isdigit():
        memory = int(env["SLURM_MEM_PER_CPU"]) * cores * 2**20
    elif env.get("SLURM_MEM_PER_NODE", "").isdigit():
        memory = int(env["SLURM_MEM_PER_NODE"]) * 2**20
    else:
        try:
            import psutil

            memory = int(psutil.virtual_memory().total)
        except ImportError:
            pass
    job_id = next(
        (env[v] for v in ("SLURM_JOB_ID", "PBS_JOBID", "JOB_ID", "LSB_JOBID") if env.get(v)), None
    )
    return {
        "host": socket.gethostname(),
        "cores": cores,
        "memory": memory,
        "pid": os.getpid(),
        "engine_set": env.get("KALE_ENGINE_SET", ""),
        "job_id": job_id,
    }


def run_task(payload: bytes) -> tuple[bool, Any]:
    """Run a cloudpickled ``(fn, args, kwargs)``; ``(True, result)`` or ``(False, (exc, tb))``."""
    import pickle
    import traceback

    fn, args, kwargs = pickle.loads(payload)
    try:
        return True, fn(*args, **kwargs)
    except Exception as e:
        tb = traceback.format_exc()
        try:
            pickle.dumps(e)
        except Exception:  # an exception that cannot travel is sent as its text
            e = RuntimeError(f"{type(e).__name__}: {e}")
        return False, (e, tb)


def pack(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    import cloudpickle

    return cloudpickle.dumps((fn, args, kwargs))


def unpack(reply: tuple[bool, Any]) -> Any:
    """Return :func:`run_task`'s result, or raise its exception with the remote traceback."""
    ok, value = reply
    if ok:
        return value
    exc, tb = value
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(f"Remote traceback (ipyparallel engine):\n{tb}")
    raise exc


class EngineFuture(NativeFuture):
    """A ``concurrent.futures.Future`` for one task on an ipyparallel engine.

    ``async_result`` is ipyparallel's own ``AsyncResult``. ``cancel()`` aborts the task
    if no engine has started it yet; a started task runs on and its result is dropped.
    """

    @property
    def async_result(self) -> Any:
        return self.native

    def _native_result(self) -> Any:
        return unpack(self.native.result())

    def _cancel_native(self) -> None:
        # Not AsyncResult.abort(), which waits for every engine's answer: an engine
        # stuck in C code (or stopped) never gives one, and the caller would hang.
        native = self.native
        native._client.abort(native.msg_ids, targets=native._targets, block=False)

