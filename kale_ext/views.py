"""Views found by name: how the lower floors show themselves without importing the widgets.

Clusters and searches sit below the widgets, so they never import them. A package that
can show one registers a factory under the ``kale_ext.views`` entry-point group (kale's
own widgets register ``cluster = kale_ext.widgets:ClusterWidget`` and
``search = kale_ext.widgets:SearchPanel``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

logger = logging.getLogger(__name__)

GROUP = "kale_ext.views"


def view_factory(name: str) -> Callable[..., Any] | None:
    """Return the factory registered as ``name`` in the ``kale_ext.views`` group, or None."""
    for ep in entry_points(group=GROUP, name=name):
        try:
            factory: Callable[..., Any] = ep.load()
        except ImportError as e:  # a view whose packages are missing is skipped
            logger.debug("view %s unavailable: %s", name, e)
            continue
        return factory
    return None
