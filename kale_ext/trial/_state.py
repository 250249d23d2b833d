"""Trial states and driver decisions: the small vocabulary every part of a run shares."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class TrialState(enum.IntEnum):
    """Life of a trial. Finished states never change again, except by ``restart``.

    The store persists the int values; ``label`` is the word the REST API and the
    tables show.
    """

    PENDING = 0
    RUNNING = 1
    PAUSED = 2
    COMPLETED = 3
    PRUNED = 4
    STOPPED = 5
    FAILED = 6

    def is_finished(self) -> bool:
        """Whether the trial has ended (completed, pruned, stopped or failed)."""
        return self >= TrialState.COMPLETED

    def is_running(self) -> bool:
        """Whether an attempt of the trial is under way on a worker."""
        return self is TrialState.RUNNING

    @property
    def label(self) -> str:
        """The state's lower-case name: ``"running"``, ``"completed"``, ..."""
        return self.name.lower()


class Action(str, enum.Enum):
    """What the driver tells a running trial in the reply to a report."""

    CONTINUE = "continue"
    STOP = "stop"  # the user or the search ended it
    PRUNE = "prune"  # an early-stopping scheduler ended it
    PAUSE = "pause"  # checkpoint and leave; resumed later from the checkpoint
    EXPLOIT = "exploit"  # PBT: leave; the driver restarts it from another trial's checkpoint


@dataclass(frozen=True)
class Decision:
    """The driver's answer to a trial: an action, why, and for ``EXPLOIT`` where to go.

    It travels over the metric channel as the mapping of :meth:`to_dict`.
    """

    action: Action = Action.CONTINUE
    reason: str = ""
    # For EXPLOIT: the trial whose checkpoint to load and the new (explored) params.
    source_trial: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form sent in the channel's acknowledgements."""
        return {"action": self.action.value, "reason": self.reason,
                "source_trial": self.source_trial, "params": self.params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Return the decision of a channel reply; an empty reply means ``CONTINUE``."""
        return cls(Action(data.get("action", Action.CONTINUE.value)), data.get("reason", ""),
                   data.get("source_trial"), dict(data.get("params") or {}))


CONTINUE = Decision()
