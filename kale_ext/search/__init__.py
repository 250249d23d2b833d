"""Hyperparameter searches: spaces, samplers, early-stopping schedulers and trial states."""

from __future__ import annotations

import sys
import types

from kale_ext.search._control import ACTIONS, channel_file, control, driver_alive
from kale_ext.search._domains import Choice, Grid, choice, grid, integer, loguniform, uniform
from kale_ext.search._migration import migrations
from kale_ext.search._ranges import Domain, Integer, LogUniform, Uniform
from kale_ext.search._remote import attach
from kale_ext.search._remote import resume as resume_driver
from kale_ext.search._results import searches
from kale_ext.search._samplers import ALGORITHMS, Sampler, Suggestion, make_sampler
from kale_ext.search._search import Search
from kale_ext.search._space import Space
from kale_ext.search._summary import SearchSummary, summarize, summarize_store
from kale_ext.search.schedulers import (
    ASHA,
    FIFO,
    PBT,
    Hyperband,
    MedianStopping,
    Scheduler,
)
from kale_ext.search.schedulers import from_dict as scheduler_from_dict
from kale_ext.trial import Action, Decision, TrialState

# The public name is ``int`` (kale.int(1, 8)); modules here say ``integer`` to keep the builtin.
int = integer

__all__ = [
    "ACTIONS",
    "ALGORITHMS",
    "ASHA",
    "FIFO",
    "PBT",
    "Action",
    "Choice",
    "Decision",
    "Domain",
    "Grid",
    "Hyperband",
    "Integer",
    "LogUniform",
    "MedianStopping",
    "Sampler",
    "Scheduler",
    "Search",
    "SearchSummary",
    "Space",
    "Suggestion",
    "TrialState",
    "Uniform",
    "attach",
    "channel_file",
    "choice",
    "control",
    "driver_alive",
    "grid",
    "int",
    "integer",
    "loguniform",
    "make_sampler",
    "migrations",
    "resume_driver",
    "scheduler_from_dict",
    "searches",
    "summarize",
    "summarize_store",
    "uniform",
]


class _SearchPackage(types.ModuleType):
    """The search package, callable: ``kale.search(name)`` is :func:`attach`."""

    def __call__(self, name: str) -> Search:
        return attach(name)


sys.modules[__name__].__class__ = _SearchPackage
