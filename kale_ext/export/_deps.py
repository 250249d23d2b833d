"""Importing a target's library on first use, with an install hint when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from kale_ext._errors import KaleError

EXTRA = "export"
"""The optional-dependency group that installs every export target's library."""


class MissingDependency(KaleError, ImportError):
    """An export target's library is not installed; the message says how to install it."""


def require(module: str, *, target: str, package: str) -> ModuleType:
    """Import ``module`` for export target ``target``, or say which package to install.

    Raises
    ------
    MissingDependency
        Naming the target, the missing package and the ``export`` extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"export(to={target!r}) needs the {package!r} package ({module} could not be "
            f"imported: {e}). Install it with pip install 'kale-ext[{EXTRA}]' "
            f"(or pip install {package})."
        ) from e
