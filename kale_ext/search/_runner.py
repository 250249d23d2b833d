"""What runs on the worker: the trial wrapper, ``kale.report`` and checkpoint helpers.

The driver submits :func:`run_trial` to the cluster. It opens a metric channel
client, makes the trial's context current (so ``report()`` finds it), runs the
user's function, and sends an ``end`` message before returning, so that every
report is acknowledged (durable in the store) before the task finishes.
"""

from __future__ import annotations

import contextvars
import math
import os
import pickle
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale_ext._errors import ChannelError, KaleError, TrialPruned, TrialStopped
from kale_ext.search._trial import Action, Decision


@dataclass
class TrialContext:
    """Everything a running trial (or one rank of it) knows about itself."""

    trial: int
    attempt: int
    rank: int
    config: dict[str, Any]
    checkpoint_dir: str
    client: Any = None  # ChannelClient; None outside a search
    restore_from: str | None = None  # a checkpoint file to start from (resume, pause, PBT)
    # Seconds a report waits for the driver's acknowledgement. Past it the driver is taken
    # for dead: the trial ends and frees its worker, and a resumed search re-runs it.
    report_timeout: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)
    _auto_step: int = 0


_current: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar(
    "kale_trial", default=None
)


def current() -> TrialContext | None:
    """The running trial's context, or None outside a trial."""
    return _current.get()


def _check_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in metrics.items():
        if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise KaleError(
                f"kale.report() metric {name!r} must be a number or string, but got "
                f"{type(value).__name__} {value!r}. Report plain numbers, e.g. loss=float(loss)."
            )
        clean[name] = value
    return clean


def report(**metrics: Any) -> Decision:
    """Report metrics of the running trial to the search driver.

    Call it once per epoch (or step) with any named numbers: ``epoch`` (or ``step``)
    orders the rows; ``loss``, ``val_loss``, ``acc``, ``val_acc`` and anything else are
    stored and shown live. It returns once the driver has stored the row, with the
    driver's decision: when the trial must end (stopped, pruned, paused, exploited),
    it raises :class:`kale.TrialStopped` (:class:`kale.TrialPruned` for early stopping).
    Save a checkpoint before calling it to be resumable.

    Outside a search, metrics are checked and nothing is sent, so ``train(config)``
    also runs on its own.
    """
    return _report(metrics, block=True)


def report_nowait(**metrics: Any) -> Decision:
    """Like :func:`report`, but queue the row and return at once, for many reports per
    second; rows are batched and still stored in order, and the decision seen is the
    latest the driver sent."""
    return _report(metrics, block=False)


def _report(metrics: dict[str, Any], *, block: bool) -> Decision:
    clean = _check_metrics(metrics)
    ctx = current()
    if ctx is None or ctx.client is None:
        return Decision()
    step = clean.get("epoch", clean.get("step"))
    if step is None:
        step = ctx._auto_step
        clean["step"] = step
    if isinstance(step, int | float) and not (isinstance(step, float) and math.isnan(step)):
        ctx._auto_step = int(step) + 1
    decision = _send(ctx, "report", clean, block=block)
    _raise_for(decision)
    return decision


def _send(ctx: TrialContext, kind: str, data: dict[str, Any], *, block: bool = True) -> Decision:
    """Send to the driver; a driver silent for ``report_timeout`` s ends the trial."""
    try:
        decision: Decision = ctx.client.send(kind, data, block=block,
                                             timeout=ctx.report_timeout)
    except ChannelError as e:
        stop = TrialStopped(f"lost contact with the search driver: {e}")
        stop.action = Action.STOP  # type: ignore[attr-defined]
        raise stop from e
    return decision


def _raise_for(decision: Decision) -> None:
    if decision.action is Action.CONTINUE:
        return
    reason = decision.reason or decision.action.value
    error = TrialPruned(reason) if decision.action is Action.PRUNE else TrialStopped(reason)
    error.action = decision.action  # type: ignore[attr-defined]
    raise error


def _torch_or_pickle() -> tuple[Callable[..., Any], Callable[..., Any]]:
    try:
        import torch

        return torch.save, lambda path: torch.load(path, weights_only=False)
    except ImportError:
        def save(obj: Any, path: str) -> None:
            with open(path, "wb") as f:
                pickle.dump(obj, f)

        def load(path: str) -> Any:
            with open(path, "rb") as f:
                return pickle.load(f)

        return save, load


def save_checkpoint(state: Any, step: int) -> str | None:
    """Save ``state`` (e.g. model and optimizer state dicts) as the trial's checkpoint.

    Written atomically with ``torch.save`` (pickle without torch) into the trial's
    checkpoint folder, and recorded in the store so that a paused, restarted or
    resumed trial continues from it. Only rank 0 of a distributed trial writes.
    Returns the path, or None outside a search or on ranks other than 0.
    """
    ctx = current()
    if ctx is None or ctx.rank != 0:
        return None
    folder = Path(ctx.checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{int(step):06d}.pt"
    tmp = path.with_suffix(".tmp")
    save, _ = _torch_or_pickle()
    save(state, str(tmp))
    os.replace(tmp, path)
    if ctx.client is not None:
        _send(ctx, "checkpoint", {"step": int(step), "path": str(path)})
    ctx.restore_from = str(path)
    return str(path)


def load_checkpoint() -> Any | None:
    """The state saved by the latest :func:`save_checkpoint` this trial should resume
    from (after a pause, a retry, a resumed search or a PBT exploit), else None."""
    ctx = current()
    if ctx is None or not ctx.restore_from or not Path(ctx.restore_from).exists():
        return None
    _, load = _torch_or_pickle()
    return load(ctx.restore_from)


def run_trial(
    fn_pickle: bytes,
    context: TrialContext,
    channel: dict[str, Any],
) -> dict[str, Any]:
    """Run one attempt of a trial on a worker; return how it ended.

    ``fn_pickle`` is the trial function as cloudpickle bytes, so Dask and ipyparallel
    ship it the same way. Never raises for trial failures: the outcome (``ok``,
    ``stopped`` with the action, or ``error`` with the traceback) is both sent over the
    channel and returned.
    """
    import cloudpickle

    from kale_ext.channel import ChannelClient, ChannelInfo

    fn: Callable[[dict[str, Any]], Any] = cloudpickle.loads(fn_pickle)

    info = ChannelInfo.from_dict(channel)
    client = ChannelClient(info.address, info.key, context.trial, context.attempt, context.rank)
    context.client = client
    token = _current.set(context)
    outcome: dict[str, Any]
    try:
        client.send("start", {"host": socket.gethostname(), "pid": os.getpid(),
                              "worker": _worker_name()}, block=True,
                    timeout=context.report_timeout)
        value = fn(dict(context.config))
        outcome = {"status": "ok", "return": _plain(value)}
    except TrialStopped as e:
        action = getattr(e, "action", Action.STOP)
        outcome = {"status": "stopped", "action": Action(action).value, "reason": e.reason}
    except BaseException as e:  # the trial's own failure: report it with its traceback
        outcome = {"status": "error", "error": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc()}
    finally:
        _current.reset(token)
    try:
        client.send("end", outcome, block=True, timeout=context.report_timeout)
    except ChannelError as e:  # the driver is gone; a resumed search re-runs this trial
        outcome.setdefault("channel", str(e))
    finally:
        client.close(timeout=0 if "channel" in outcome else 10.0)
    return outcome


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a trial's return value (None when it has none)."""
    if value is None or isinstance(value, int | float | str | bool):
        return value
    if isinstance(value, dict):
        try:
            return _check_metrics(value)
        except KaleError:
            return repr(value)[:200]
    return repr(value)[:200]


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        pass
    engine_id = os.environ.get("IPYP_ENGINE_ID") or os.environ.get("KALE_WORKER_NAME")
    return engine_id or f"{socket.gethostname()}:{os.getpid()}"
