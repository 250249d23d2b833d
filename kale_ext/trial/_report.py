"""``kale.report`` and checkpoints: what trial code calls while it runs."""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kale_ext import registry
from kale_ext._errors import ChannelError, KaleError, TrialPruned, TrialStopped
from kale_ext.trial._context import TrialContext, current
from kale_ext.trial._state import Action, Decision


def check_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Return ``metrics`` with numpy/torch scalars made plain.

    Raise for anything not a number or string, naming the metric.
    """
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


STEP_KEYS = ("epoch", "step")
"""The metrics that order a trial's rows, in the order they are looked up."""

_STEP_LIMIT = 2**63  # SQLite's INTEGER is a signed 64-bit number


def check_step(value: Any, name: str = "epoch") -> int:
    """Return the step ``value`` of a report (its ``epoch`` or ``step``) as an int.

    Raise :class:`kale.KaleError` naming the metric, the value and the rule when it is
    not a finite number within SQLite's 64-bit integers (NaN, infinity, text, a bool, or
    a number of 2**63 or more).
    """
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or (isinstance(value, float) and not math.isfinite(value)) \
            or not -_STEP_LIMIT <= value < _STEP_LIMIT:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise KaleError(
            f"Report metric {name!r} is {shown} ({type(value).__name__}), but the step of a "
            f"report must be a finite whole number from -2**63 to 2**63-1: it orders the "
            f"trial's rows. Report {name}=int({name})."
        )
    return int(value)


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
    """Queue a row like :func:`report` does, and return at once.

    For many reports per second: rows are batched and still stored in order, and the
    decision seen is the latest the driver sent.
    """
    return _report(metrics, block=False)


def _report(metrics: dict[str, Any], *, block: bool) -> Decision:
    clean = check_metrics(metrics)
    name = next((key for key in STEP_KEYS if clean.get(key) is not None), None)
    step = check_step(clean[name], name) if name is not None else None
    ctx = current()
    if ctx is None or ctx.client is None:
        return Decision()
    if step is None:
        step = ctx._auto_step
        clean["step"] = step
    ctx._auto_step = min(step + 1, _STEP_LIMIT - 1)  # the next row without a step
    decision = send(ctx, "report", clean, block=block)
    _raise_for(decision)
    return decision


def send(ctx: TrialContext, kind: str, data: dict[str, Any], *,
         block: bool = True) -> Decision:
    """Send a message of the running trial; return the driver's decision.

    A driver silent for ``ctx.report_timeout`` s ends the trial with
    :class:`kale.TrialStopped`.
    """
    if ctx.client is None:
        return Decision()
    try:
        reply = ctx.client.send(kind, data, block=block, timeout=ctx.report_timeout)
    except ChannelError as e:
        stop = TrialStopped(f"lost contact with the search driver: {e}")
        stop.action = Action.STOP  # type: ignore[attr-defined]
        raise stop from e
    return Decision.from_dict(reply)


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
    folder = registry.private_folder(ctx.checkpoint_dir, what="Trial checkpoint folder")
    path = folder / f"step-{int(step):06d}.pt"
    tmp = path.with_suffix(".tmp")
    save, _ = _torch_or_pickle()
    save(state, str(tmp))
    os.chmod(tmp, 0o600)  # a pickle: the owner's alone, whatever the umask
    os.replace(tmp, path)
    if ctx.client is not None:
        send(ctx, "checkpoint", {"step": int(step), "path": str(path)})
    ctx.restore_from = str(path)
    return str(path)


def load_checkpoint() -> Any | None:
    """Return the state this trial should resume from, else None.

    That is the state saved by the latest :func:`save_checkpoint`, after a pause, a
    retry, a resumed search or a PBT exploit.
    """
    ctx = current()
    if ctx is None or not ctx.restore_from or not Path(ctx.restore_from).exists():
        return None
    # Unpickling runs code: only from a file and folder no one else could have written.
    registry.guard_file(ctx.restore_from, what="Checkpoint")
    _, load = _torch_or_pickle()
    return load(ctx.restore_from)
