"""A real jupyter_server with the kale extension, from pytest-jupyter's fixtures."""

from __future__ import annotations

import json

import cloudpickle
import pytest

# pytest-jupyter has no entry point; its fixtures (and its async-test hook) come in here.
from pytest_jupyter.jupyter_server import *  # noqa: F403

from tests.search import trainables

# Workers need not import the tests package: ship the trial functions by value.
cloudpickle.register_pickle_by_value(trainables)


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"kale_ext.server": True}}}


@pytest.fixture
def api(jp_fetch):
    """``await api(method, path, body=None)`` -> (status, JSON); never raises on 4xx."""

    async def call(method: str, *path: str, body=None, params=None):
        kwargs = {"method": method, "raise_error": False, "request_timeout": 120}
        if body is not None:
            kwargs["body"] = body if isinstance(body, str) else json.dumps(body)
        elif method in ("POST", "PATCH"):
            kwargs["body"] = ""
        if method == "DELETE":
            kwargs["allow_nonstandard_methods"] = True
        response = await jp_fetch("kale", "api", *path, params=params, **kwargs)
        text = response.body.decode() if response.body else ""
        return response.code, (json.loads(text) if text else None)

    return call
