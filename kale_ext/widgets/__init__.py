"""Notebook widgets: the live search panel, the cluster widget, distributed-run curves.

Built on ipywidgets, ipydatagrid and bokeh (through jupyter_bokeh); install them with
``pip install 'kale-ext[widgets]'``. Everything updates from background threads,
throttled, so the kernel stays free for the user's cells.

    search.panel()                              # a live search
    kale_ext.widgets.panel("runs/x.kale.sqlite")  # a stored one, read-only
"""

from __future__ import annotations

from kale_ext.widgets._bokeh import load_bokehjs
from kale_ext.widgets._cluster import ClusterWidget
from kale_ext.widgets._feed import Delta, StoreFeed
from kale_ext.widgets._model import Curve, TrialBook
from kale_ext.widgets._panel import SearchPanel, panel
from kale_ext.widgets._resources import ResourceMonitor, ResourcesView
from kale_ext.widgets._runs import DistributedRunPanel
from kale_ext.widgets._sampler import gpu_samples, sample_resources

__all__ = [
    "ClusterWidget",
    "Curve",
    "Delta",
    "DistributedRunPanel",
    "ResourceMonitor",
    "ResourcesView",
    "SearchPanel",
    "StoreFeed",
    "TrialBook",
    "gpu_samples",
    "load_bokehjs",
    "panel",
    "sample_resources",
]
