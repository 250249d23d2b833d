"""Bokeh plumbing: BokehJS loaded inline once, figures wrapped as widgets."""

from __future__ import annotations

import threading
from typing import Any

from kale_ext._errors import KaleError

_loaded = False
_load_lock = threading.Lock()

INSTALL_HINT = "Install the widget extras: pip install 'kale-ext[widgets]'."


def require(module: str) -> Any:
    """Import a widget dependency, or raise naming the package and how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise KaleError(f"kale's widgets need {module.split('.')[0]!r} ({e}). "
                        f"{INSTALL_HINT}") from e


def load_bokehjs(force: bool = False) -> None:
    """Put BokehJS into the notebook page, inline.

    The CDN is unreachable on many compute nodes, and a BokehModel without BokehJS in
    the page shows "Could not create a view". Runs once per kernel unless ``force``.
    """
    global _loaded
    with _load_lock:
        if _loaded and not force:
            return
        require("bokeh")
        import bokeh.io
        import bokeh.resources

        bokeh.io.output_notebook(bokeh.resources.INLINE, hide_banner=True)
        _loaded = True


def bokeh_widget(model: Any) -> Any:
    """Return a ``jupyter_bokeh.BokehModel`` showing ``model`` (a figure or layout)."""
    jupyter_bokeh = require("jupyter_bokeh")
    return jupyter_bokeh.BokehModel(model)


def palette(n: int) -> str:
    """Return a stable colour for series ``n``."""
    from bokeh.palettes import Category20

    colours = Category20[20]
    return str(colours[(2 * n) % 20 if n < 10 else (2 * n + 1) % 20])


def close_widgets(widgets: list[Any], bokeh_models: list[Any]) -> None:
    """Close ``widgets``, and ``bokeh_models`` as plain widgets.

    A BokehModel detaches from its document in its finaliser, which fails if ``close()``
    already did.
    """
    import ipywidgets

    for w in widgets:
        w.close()
    for m in bokeh_models:
        ipywidgets.Widget.close(m)


RESYNC_AFTER = 2.0  # seconds after display when the plots are redrawn whole, once


def refresh_bundles(bokeh_models: list[Any]) -> None:
    """Put each BokehModel's current document into its initial state.

    BokehJS applies patches only to a rendered view, so whatever was streamed before
    the widget was displayed must travel in the state the view renders from; a
    redraw ``RESYNC_AFTER`` seconds later covers patches sent while the view was
    still being created.
    """
    for m in bokeh_models:
        m.update_from_model(m._model)
