"""What runs on the worker: one attempt of a trial, and how its function travels there.

The driver submits :func:`run_trial` to the cluster. It opens the trial's stream on
the worker process's metric channel connection (one per process, shared by all the
trials it runs), makes the trial's context current (so ``report()`` finds it), runs
the user's function, and sends an ``end`` message before returning, so that every
report is acknowledged (durable in the store) before the task finishes, and the
driver knows the trial returned before its task's result reaches it.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

from kale_ext._errors import ChannelError, KaleError, SearchError, TrialStopped
from kale_ext.trial._checkpoints import sees_checkpoint_root
from kale_ext.trial._context import TrialContext, using, worker_name
from kale_ext.trial._gpus import bound_gpus
from kale_ext.trial._launch import worker_marks
from kale_ext.trial._report import check_metrics
from kale_ext.trial._state import Action


def pickle_function(fn: Callable[..., Any]) -> bytes:
    """Return ``fn`` as cloudpickle bytes, the form :func:`run_trial` takes.

    Raise :class:`kale.SearchError` saying how to make an unpicklable function picklable.
    """
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(fn))
    except Exception as e:
        raise SearchError(
            f"The trial function {fn!r} cannot be pickled to send it to the workers ({e}). "
            "Define it at the top level of a module or notebook cell, and keep unpicklable "
            "objects (open files, clients, locks) out of its closure."
        ) from e


def run_trial(
    fn_pickle: bytes,
    context: TrialContext,
    channel: dict[str, Any],
) -> dict[str, Any]:
    """Run one attempt of a trial on a worker; return how it ended.

    ``fn_pickle`` is the trial function as cloudpickle bytes (:func:`pickle_function`),
    so Dask and ipyparallel ship it the same way; ``channel`` is the driver's
    :class:`kale_ext.channel.ChannelInfo` as a dict. Never raises for trial failures:
    the outcome (``ok`` with the plain ``return`` value, ``stopped`` with the action,
    or ``error`` with the traceback) is both sent over the channel and returned.
    """
    began = time.time()
    import cloudpickle

    from kale_ext.channel import ChannelClient, ChannelInfo

    fn: Callable[[dict[str, Any]], Any] = cloudpickle.loads(fn_pickle)
    loaded = time.time()

    info = ChannelInfo.from_dict(channel)
    client = ChannelClient(info.address, info.key, context.trial, context.attempt, context.rank,
                           shared=True)
    context.client = client
    worker = context.worker if context.worker is not None else worker_name()
    outcome: dict[str, Any]
    with using(context):
        try:
            # Where the trial runs: the panel shows its GPUs, and the driver warns when
            # this worker does not see the checkpoint folder.
            client.send("start", {"host": socket.gethostname(), "pid": os.getpid(),
                                  "worker": worker, "gpus": bound_gpus(),
                                  "checkpoint_dir": context.checkpoint_dir,
                                  "checkpoints_shared": sees_checkpoint_root(
                                      context.checkpoint_dir),
                                  "launch": worker_marks(context, began, loaded)},
                        block=False)  # ordered before every report; the end is acknowledged
            value = fn(dict(context.config))
            outcome = {"status": "ok", "return": plain_value(value)}
        except TrialStopped as e:
            action = getattr(e, "action", Action.STOP)
            outcome = {"status": "stopped", "action": Action(action).value, "reason": e.reason}
        except BaseException as e:  # the trial's own failure: report it with its traceback
            outcome = {"status": "error", "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()}
    try:
        client.send("end", outcome, block=True, timeout=context.report_timeout)
    except ChannelError as e:  # the driver is gone; a resumed search re-runs this trial
        outcome.setdefault("channel", str(e))
    finally:
        client.close(timeout=0 if "channel" in outcome else 10.0)
    return outcome


def plain_value(value: Any) -> Any:
    """Return a JSON-friendly version of a trial's return value (None when it has none)."""
    if value is None or isinstance(value, int | float | str | bool):
        return value
    if isinstance(value, dict):
        try:
            return check_metrics(value)
        except KaleError:
            return repr(value)[:200]
    return repr(value)[:200]
