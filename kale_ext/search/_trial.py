"""Trial states and driver decisions: the small vocabulary every search part shares."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class TrialState(enum.IntEnum):
    """Life of a trial. Finished states never change again, except by ``restart``."""

    PENDING = 0
    RUNNING = 1
    PAUSED = 2
    COMPLETED = 3
    PRUNED = 4
    STOPPED = 5
    FAILED = 6

    def is_finished(self) -> bool:
        return self >= TrialState.COMPLETED

    @property
    def label(self) -> str:
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
    action: Action = Action.CONTINUE
    reason: str = ""
    # For EXPLOIT: the trial whose checkpoint to load and the new (explored) params.
    source_trial: int | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "reason": self.reason,
                "source_trial": self.source_trial, "params": self.params}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(Action(data["action"]), data.get("reason", ""), data.get("source_trial"),
                   dict(data.get("params") or {}))


CONTINUE = Decision()
