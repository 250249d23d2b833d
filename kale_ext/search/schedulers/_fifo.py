"""FIFO: no early stopping."""

from __future__ import annotations

from typing import Any

from kale_ext.search.schedulers._base import Scheduler
from kale_ext.trial import CONTINUE, Decision


class FIFO(Scheduler):
    """Every trial runs to its end: no early stopping."""

    type_name = "FIFO"

    def _decide(self, trial: int, step: int, value: float, score: float) -> Decision:
        return CONTINUE

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name}
