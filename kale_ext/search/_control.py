"""Controlling a running search from another process.

The CLI, the Jupyter server or a second kernel send commands over the search's own
authenticated metric channel; the channel key lives in a 0600 file beside the search's
registry record.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from kale_ext import registry
from kale_ext._errors import ChannelError, SearchError
from kale_ext.trial import Decision

ACTIONS = ("stop", "pause", "resume", "restart")


def channel_file(name: str) -> Path:
    return registry.private_dir("searches", name) / "channel.json"


def driver_alive(name: str) -> bool:
    """Whether the driver of search ``name`` runs: its channel is open and its process lives.

    A driver that was killed leaves its channel file behind; its registry record names
    its process. A driver on another host counts as alive while its channel file exists.
    """
    if not channel_file(name).exists():
        return False
    record = registry.read("searches", name) or {}
    pid, host = record.get("driver_pid"), record.get("driver_host")
    if not isinstance(pid, int) or not isinstance(host, str):
        return True  # a record written before drivers named their process
    return registry.pid_alive(pid, host) is not False


def control(name: str, action: str, trial: int | None = None, *, timeout: float = 10.0,
            **params: Any) -> str:
    """Send a control command to the driver of a running search.

    Parameters
    ----------
    name
        The search's name.
    action
        ``"stop"``, ``"pause"`` or ``"resume"`` (the search, or one trial), or
        ``"restart"`` (one trial, with new params).
    trial
        The trial to act on; None acts on the whole search (not for ``"restart"``).
    timeout
        Seconds to wait for the driver's answer.
    **params
        The new parameter values of a ``"restart"`` (nested).

    Returns
    -------
    str
        The driver's answer.

    Raises
    ------
    SearchError
        When no live driver answers, with the reason, or when the driver refused (the
        message says why, e.g. the trial already completed).
    """
    from kale_ext.channel import ChannelClient, ChannelInfo

    if action not in ACTIONS:
        raise SearchError(f"Unknown action {action!r}; expected one of {', '.join(ACTIONS)}.")
    if action == "restart" and trial is None:
        raise SearchError("restart needs a trial number.")
    path = channel_file(name)
    if not driver_alive(name):
        raise SearchError(f"Search {name!r} has no running driver (its process ended); "
                          f"resume it first: kale search resume {name}, or "
                          f"kale.search({name!r}).resume().")
    info = ChannelInfo.load(path)
    # A fresh negative stream id per command: never a trial's, never reused.
    stream = -1 - secrets.randbelow(2**31)
    client = ChannelClient(info.address, info.key, stream, heartbeat=3600.0)
    try:
        reply = client.send("control", {"action": action, "trial": trial,
                                        "params": params}, timeout=timeout)
    except ChannelError as e:
        raise SearchError(f"The driver of search {name!r} did not answer within {timeout} s "
                          f"({e}); it may have exited. Resume it with kale.Search.resume().") from e
    finally:
        client.close(timeout=0)
    # The driver's answer rides in the reason of the reply's decision.
    answer = json.loads(Decision.from_dict(reply).reason or "{}")
    if not answer.get("ok"):
        raise SearchError(answer.get("error", f"The driver refused {action}."))
    return str(answer.get("message", "ok"))


class Controllable(Protocol):
    """What a control command acts on: the driver of a running search."""

    @property
    def name(self) -> str: ...

    def stop(self, trial: int | None = None) -> None: ...

    def pause(self, trial: int | None = None) -> None: ...

    def resume(self, trial: int | None = None) -> None: ...

    def restart(self, trial: int, params: Mapping[str, Any]) -> None: ...


def apply(target: Controllable, data: dict[str, Any]) -> str:
    """Run one control command on ``target`` (on the driver's side); return a message."""
    action, trial, params = data.get("action"), data.get("trial"), data.get("params") or {}
    if action not in ACTIONS:
        raise SearchError(f"Unknown action {action!r}; expected one of {', '.join(ACTIONS)}.")
    if trial is not None and not isinstance(trial, int):
        raise SearchError(f"trial must be an integer, but got {trial!r}.")
    if action == "restart":
        if trial is None:
            raise SearchError("restart needs a trial number.")
        if not isinstance(params, Mapping):
            raise SearchError(f"restart params must be a JSON object, but got {params!r}.")
        target.restart(trial, params)
    else:
        getattr(target, action)(trial)
    where = f"trial {trial}" if trial is not None else f"search {target.name}"
    return f"{action} {where}: done"
