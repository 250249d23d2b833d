"""The jupyter_server extension: ``<base_url>/kale/api/...`` over the registry and stores.

Enabled on install by ``jupyter-config/jupyter_server_config.d/kale_ext.json``; by hand
with ``jupyter server extension enable kale_ext.server``. The routes and their JSON
shapes are documented in :mod:`kale_ext.server._shapes`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kale_ext.clusters import SERVER_BASE_URL
from kale_ext.server._manager import ApiError, KaleManager

__all__ = ["ApiError", "KaleManager"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "kale_ext.server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the handlers; the manager and its executor live in the web app settings."""
    from kale_ext.server._dashboard import handlers as dashboard_handlers
    from kale_ext.server._handlers import handlers

    web_app = server_app.web_app
    # Starting a cluster blocks for seconds: a few threads, so one start does not hold
    # back the sidebar's polls.
    web_app.settings.setdefault("kale_manager", KaleManager())
    web_app.settings.setdefault(
        "kale_executor", ThreadPoolExecutor(max_workers=4, thread_name_prefix="kale-api"))
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    web_app.add_handlers(".*$", dashboard_handlers(web_app.settings["base_url"]))
    # Kernels started from here inherit it: their cluster views link the proxied dashboard.
    os.environ[SERVER_BASE_URL] = web_app.settings["base_url"]
    server_app.log.info("kale_ext: REST API at %skale/api", web_app.settings["base_url"])
