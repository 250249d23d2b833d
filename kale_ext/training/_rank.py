"""One rank: a task on its worker that runs the training function in a child process.

The task (:func:`run_rank`) starts ``python -m kale_ext.training._rank`` with the rank's
environment and waits for it. A child process per rank gives each rank a fresh
process group (torch.distributed and Horovod are process-global and set up once),
its own ``RANK``/``MASTER_*``/``HOROVOD_*`` environment and GPU, and lets a stuck rank
be ended without taking its worker down.

In the child, :func:`kale_ext.trial.run_trial` sends ``start``, runs the
function with ``kale.report`` wired to the metric channel, and sends ``end`` with the
outcome (its traceback on failure). A watchdog thread ends the child when its worker
dies, and at once when the run is aborted (another rank failed): an abort decision
arrives with the acknowledgement of the next heartbeat, so a rank blocked in a
collective is freed within a heartbeat too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from kale_ext.trial import (
    WORKER_NAME_ENV,
    Action,
    Decision,
    ReportClient,
    TrialContext,
    current,
    run_trial,
    worker_name,
)

ABORT = "kale.abort"  # key in Decision.params that marks an abort: end now, not at a report


def abort_decision(reason: str) -> Decision:
    """Return the decision that ends every rank of a run at once."""
    return Decision(Action.STOP, reason, params={ABORT: True})


def is_abort(decision: Decision) -> bool:
    return decision.action is Action.STOP and bool(decision.params.get(ABORT))


@dataclass
class RankTask:
    """Everything a rank needs, shipped to its worker."""

    fn_pickle: bytes
    context: TrialContext  # with this rank's number
    channel: dict[str, Any]
    engine: str  # "torch", "horovod" or "none"
    env: dict[str, str] = field(default_factory=dict)
    backend: str = "gloo"  # torch process-group backend
    timeout: float = 300.0  # torch process-group timeout, seconds
    warm: bool = True  # fork the rank from the worker's zygote (see ._zygote)
    listen_port: int | None = None  # the rendezvous port the probe holds on this worker


def run_rank(task: RankTask) -> dict[str, Any]:
    """Run one rank in a child process on this worker; its outcome.

    The child is forked from the worker's zygote (torch already imported, see
    :mod:`._zygote`), or started as a new interpreter with ``task.warm=False`` or when
    the zygote cannot start. The outcome is ``run_trial``'s (``status`` ok / stopped /
    error with ``traceback``) plus ``value_pickle`` (the return value, pickled),
    ``rank``, ``host``, ``pid`` and ``log`` (the tail of the rank's output). A child
    killed by a signal or dying without an outcome gives ``status="error"`` naming the
    exit code or signal.
    """
    import pickle
    import shutil
    import socket
    import tempfile

    import cloudpickle

    from kale_ext.training._rendezvous import take_listener

    rank = task.context.rank
    folder = tempfile.mkdtemp(prefix=f"kale-rank{rank}-")
    spec, result, log = (os.path.join(folder, n) for n in ("task.pkl", "result.pkl", "rank.log"))
    with open(os.open(spec, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        cloudpickle.dump(task, f)
    env = {WORKER_NAME_ENV: worker_name(), **os.environ, **task.env, "PYTHONUNBUFFERED": "1",
           # The worker's import path, so the child unpickles what the worker could.
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    host = socket.gethostname()
    # Rank 0's store listens on the socket its probe bound: no other process can take
    # the port between the probe and the rendezvous.
    listener = take_listener(task.listen_port)
    fds = [listener.fileno()] if listener is not None and rank == 0 else []
    try:
        child = _start(task, [spec, result], log, env, fds)
        try:
            code = child.wait()
        except BaseException:  # the task itself is being torn down: take the child along
            child.kill()
            raise
        tail = _tail(log)
        try:
            with open(result, "rb") as f:
                outcome: dict[str, Any] = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            how = ("was lost with its launcher process" if code is None
                   else f"was killed by {signal.Signals(-code).name}" if code < 0
                   else f"exited with code {code}")
            outcome = {"status": "error",
                       "error": f"rank {rank} process (pid {child.pid} on {host}) {how} before "
                                "it finished",
                       "traceback": f"Last output of rank {rank}:\n{tail or '(none)'}",
                       "killed": True, "failed_at": time.time()}
        outcome.update(rank=rank, host=host, pid=child.pid, log=tail, exit_code=code,
                       warm=child.warm)
        return outcome
    finally:
        if listener is not None:
            listener.close()
        shutil.rmtree(folder, ignore_errors=True)


class _Child:
    """A rank's process: forked by the zygote, or a new interpreter."""

    def __init__(self, pid: int, wait: Any, warm: bool) -> None:
        self.pid = pid
        self._wait = wait
        self.warm = warm

    def wait(self) -> int | None:
        code: int | None = self._wait()
        return code

    def kill(self) -> None:
        import contextlib

        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.wait()


def _start(task: RankTask, argv: list[str], log: str, env: dict[str, str],
           fds: list[int]) -> _Child:
    import subprocess

    from kale_ext.training import _zygote
    from kale_ext.training._torch import LISTEN_FD_ENV

    if task.warm:
        try:
            z = _zygote.zygote()
            pid = z.spawn(argv, log=log, env=env, cwd=os.getcwd(),
                          path=[p for p in sys.path if p], fds=fds)
            return _Child(pid, lambda: z.wait(pid), True)
        except (_zygote.ZygoteGone, OSError) as e:  # a new interpreter still runs the rank
            print(f"kale: rank {task.context.rank} starts without the rank launcher: {e}",
                  file=sys.stderr)
    if fds:
        env = {**env, LISTEN_FD_ENV: str(fds[0])}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kale_ext.training._rank", *argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=os.getcwd(), pass_fds=fds)
    return _Child(proc.pid, proc.wait, False)


def _tail(path: str, n: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


# What the rank's child process keeps between run_trial and writing its result: run_trial
# runs a copy of _Body (it unpickles it), so the return value is left here.
_holder: dict[str, Any] = {}


class _Body:
    """The function run_trial calls in the child: engine set-up around the user's code."""

    def __init__(self, task: RankTask) -> None:
        self.task = task

    def __call__(self, config: dict[str, Any]) -> Any:
        ctx = current()
        assert ctx is not None and ctx.client is not None
        _watch(ctx.client)
        _mark_first_report(ctx.client)
        fn = _holder.get("fn") or _load_fn(self.task)
        from kale_ext.training import _torch

        try:
            if self.task.engine == "torch":
                _torch.init_process_group(self.task.backend, self.task.timeout)
            _marks()["rendezvous"] = time.time()
            value = fn(config)
            _marks()["returned"] = time.time()
        except BaseException:
            _holder["failed_at"] = time.time()  # orders the failures of several ranks
            raise
        finally:
            if self.task.engine == "torch":
                _torch.destroy_process_group()
        _holder["value"] = value
        return value


def _marks() -> dict[str, float]:
    """Return the launch marks of this rank's process (see :mod:`._timings`)."""
    return _holder.setdefault("marks", {})


def _load_fn(task: RankTask) -> Any:
    """Unpickle the training function; for torch, import torch.distributed first.

    Done before the run starts, so that the imports count as imports, not rendezvous.
    """
    import cloudpickle

    if task.engine == "torch":
        import torch.distributed  # noqa: F401
    return cloudpickle.loads(task.fn_pickle)


def _mark_first_report(client: ReportClient) -> None:
    """Record when the training function first reports (its first batch is done)."""
    send = client.send

    def first(kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "report":
            _marks().setdefault("first_report", time.time())
        return send(kind, *args, **kwargs)

    client.send = first  # type: ignore[method-assign]


def _watch(client: ReportClient) -> None:
    """End this process when its worker dies or the run is aborted."""
    parent = os.getppid()

    def loop() -> None:
        while True:
            time.sleep(0.1)
            if os.getppid() != parent:  # the worker died: nothing would collect this rank
                os._exit(1)
            decision = Decision.from_dict(client.decision)
            if is_abort(decision):
                _write_result(_holder["result"], {"status": "stopped", "action": "stop",
                                                 "reason": decision.reason, "aborted": True})
                os._exit(0)

    threading.Thread(target=loop, daemon=True, name="kale-rank-watchdog").start()


def _write_result(path: str, outcome: dict[str, Any]) -> None:
    """Write the outcome for the parent task.

    That is plain fields, and the return value as cloudpickle bytes that only the kernel
    loads (the worker need not import torch).
    """
    import pickle

    import cloudpickle

    meta = {k: v for k, v in outcome.items() if k != "value"}
    try:
        value = cloudpickle.dumps(outcome.get("value"))
    except Exception as e:  # an unpicklable return value travels as its repr
        value = cloudpickle.dumps(f"unpicklable return value {outcome.get('value')!r:.500}: {e}")
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump({**meta, "value_pickle": value}, f)
    os.replace(tmp, path)


def main(spec_path: str, result_path: str) -> None:
    import cloudpickle

    from kale_ext.training._cache import CACHE_DIR_ENV
    from kale_ext.training._timings import process_created

    _marks()["created"] = process_created()
    with open(spec_path, "rb") as f:
        task: RankTask = cloudpickle.load(f)
    _holder["result"] = result_path
    _holder["fn"] = _load_fn(task)
    _marks()["imported"] = time.time()
    # The launcher named the worker; asking Dask would import distributed (a second).
    # A search's trial keeps where its launch went: this process's start and whether it
    # is a new interpreter (a fork of the zygote has the zygote's cache folder set).
    launch = {"created": _marks()["created"], "first": CACHE_DIR_ENV not in os.environ}
    context = replace(task.context, client=None, worker=os.environ.get(WORKER_NAME_ENV, ""),
                      extra={**task.context.extra, "launch": launch})
    outcome = run_trial(cloudpickle.dumps(_Body(task)), context, task.channel)
    outcome["value"] = _holder.get("value")
    if "failed_at" in _holder:
        outcome["failed_at"] = _holder["failed_at"]
    outcome["marks"] = _marks()
    _write_result(result_path, outcome)
    # Everything is reported and written: skip the interpreter's teardown (a second or
    # more with torch loaded), which would hold the worker for nothing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    # Run the module's own copy, not __main__'s: _Body must pickle by reference.
    from kale_ext.training._rank import main as module_main

    module_main(sys.argv[1], sys.argv[2])
