"""Bokeh plumbing: BokehJS in the page once, figures wrapped as widgets."""

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


# Loads BokehJS from the kale server extension when the page has none yet (the lab
# extension normally did so when the page opened): a few hundred bytes in the output.
_PAGE_LOADER = """
(function () {
  if (window.Bokeh || window._kaleBokehLoading) { return; }
  window._kaleBokehLoading = true;
  var config = document.getElementById('jupyter-config-data');
  var base = config ? (JSON.parse(config.textContent).baseUrl || '/') : '/';
  %s.reduce(function (previous, name) {
    return previous.then(function () {
      return new Promise(function (resolve, reject) {
        var s = document.createElement('script');
        s.src = base.replace(/\\/?$/, '/') + 'kale/static/bokeh/' + name;
        s.onload = resolve; s.onerror = reject; document.head.appendChild(s);
      });
    });
  }, Promise.resolve());
})();
"""
_BUNDLES = ["bokeh.min.js", "bokeh-gl.min.js", "bokeh-widgets.min.js", "bokeh-tables.min.js"]


def load_bokehjs(force: bool = False, *, inline: bool = False) -> None:
    """Make sure the notebook page has BokehJS, once per kernel unless ``force``.

    A BokehModel without BokehJS in the page shows "Could not create a view". kale's lab
    extension loads BokehJS once per page from the Jupyter server (offline: no CDN,
    which compute nodes cannot reach); this adds a small loader for a page without it.
    ``inline=True`` puts the whole BokehJS into the output instead (megabytes in a
    saved notebook), for front ends without kale's server extension.
    """
    global _loaded
    with _load_lock:
        if _loaded and not force:
            return
        require("bokeh")
        from IPython.display import Javascript, display

        if inline:
            import bokeh.io
            import bokeh.resources

            bokeh.io.output_notebook(bokeh.resources.INLINE, hide_banner=True)
        else:
            import json

            display(Javascript(_PAGE_LOADER % json.dumps(_BUNDLES)))
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
