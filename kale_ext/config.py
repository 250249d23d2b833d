"""Configuration: one YAML of defaults in dask's config system, under the ``kale`` key.

Users override values the way they override dask's: a YAML file in any dask config
location (``~/.config/dask/kale.yaml``), ``DASK_KALE__<KEY>`` environment variables,
or ``dask.config.set({"kale.<key>": value})``. Site profiles are named sections under
``kale.profiles``; a profile's values are defaults for ``start_cluster`` keywords.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import platformdirs
import yaml

from kale_ext._errors import ConfigError

_DEFAULTS = Path(__file__).with_name("kale.yaml")


def _load_defaults() -> None:
    with _DEFAULTS.open() as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)
    # A dask.yaml in the user's config dir may already carry kale keys; re-read them
    # so they win over the defaults we just registered.
    dask.config.refresh()


_load_defaults()


def get(key: str, default: Any = None) -> Any:
    """Read ``kale.<key>`` from dask's config."""
    return dask.config.get(f"kale.{key}", default=default)


def state_dir() -> Path:
    """Directory of the registry: cluster records, search records, security files."""
    configured = get("state-dir")
    path = Path(configured).expanduser() if configured else Path(
        platformdirs.user_data_dir("kale", appauthor=False)
    )
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def store_dir() -> Path:
    """Default directory for search stores; local disk, not a parallel file system."""
    configured = get("store-dir")
    path = Path(configured).expanduser() if configured else state_dir() / "stores"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def profiles() -> dict[str, dict[str, Any]]:
    """All site profiles by name, keys in keyword form (``cores_per_worker``)."""
    raw = get("profiles", {}) or {}
    return {name: _keywords(section or {}) for name, section in raw.items()}


def profile(name: str | None) -> dict[str, Any]:
    """Return the keyword defaults of profile ``name`` (the configured default when None)."""
    name = name or get("default-profile") or "local"
    known = profiles()
    if name not in known:
        raise ConfigError(
            f"Unknown profile {name!r}. Known profiles: {', '.join(sorted(known)) or 'none'}. "
            "Add one under 'kale.profiles' in ~/.config/dask/kale.yaml or pick a known name."
        )
    return dict(known[name])


def profile_for(kind: str | None) -> str | None:
    """Return the profile whose defaults a start of ``kind`` without a profile takes.

    The default profile when it is of that kind (or ``kind`` is None); else the profile
    named after the kind (``slurm``, ``pbs``, ...) when it is of that kind or says none;
    else None: the kind starts from no profile at all, so that no key meant for another
    kind (``threads_per_worker`` of ``local``) leaks into it.
    """
    default = get("default-profile") or "local"
    if kind is None:
        return str(default)
    known = profiles()
    if known.get(default, {}).get("kind", "local") == kind:
        return str(default)
    own = known.get(kind)
    if own is not None and own.get("kind", kind) == kind:
        return kind
    return None


def resolve(profile_name: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Merge a profile with explicit keywords; keywords that are None do not override.

    Without ``profile_name`` the profile is :func:`profile_for` the ``kind`` keyword.
    """
    keywords = {k: v for k, v in _keywords(overrides).items() if v is not None}
    name = profile_name or profile_for(keywords.get("kind"))
    merged = profile(name) if name is not None else {}
    merged.update(keywords)
    merged["profile"] = name
    return merged


def _keywords(section: dict[str, Any]) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in section.items()}

