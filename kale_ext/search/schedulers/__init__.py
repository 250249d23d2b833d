"""Early-stopping schedulers: decide on each report whether a trial goes on.

Pure policy, no I/O: a search feeds them reports and acts on their decisions.
"""

from __future__ import annotations

from kale_ext.search.schedulers._asha import ASHA, Rung
from kale_ext.search.schedulers._base import Scheduler, from_dict
from kale_ext.search.schedulers._fifo import FIFO
from kale_ext.search.schedulers._hyperband import Hyperband
from kale_ext.search.schedulers._median import MedianStopping
from kale_ext.search.schedulers._pbt import PBT

__all__ = ["ASHA", "FIFO", "PBT", "Hyperband", "MedianStopping", "Rung", "Scheduler",
           "from_dict"]
