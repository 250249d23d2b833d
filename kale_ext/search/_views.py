"""Finding the view that shows a search: searches sit below the widgets, so they never
import them. A package that can show a search registers a factory under the
``kale_ext.views`` entry-point group (kale's own widgets register
``search = kale_ext.widgets:SearchPanel``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

logger = logging.getLogger(__name__)


def view_factory(name: str) -> Callable[..., Any] | None:
    """The factory registered as ``name`` in the ``kale_ext.views`` group, or None."""
    for ep in entry_points(group="kale_ext.views", name=name):
        try:
            factory: Callable[..., Any] = ep.load()
        except ImportError as e:  # a view whose packages are missing is skipped
            logger.debug("view %s unavailable: %s", name, e)
            continue
        return factory
    return None
