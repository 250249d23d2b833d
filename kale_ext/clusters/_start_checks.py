"""Checks of a start's options that need no batch system, no network and no process.

:func:`kale_ext.clusters.check_start` runs them (through each backend's ``check``)
before anything starts, so a bad value fails at once with a :class:`ConfigError` that
names the option, its value and the rule.

TLS is on for every Dask cluster. Plain TCP takes the explicit value
``tls="off-i-know"`` (``tls: off-i-know`` in a profile): anyone who reaches a plaintext
scheduler's port can run code as its owner, so ``tls: false`` alone is refused, the
opt-in logs a warning, and a plaintext scheduler never listens on every interface.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from kale_ext._errors import ConfigError

logger = logging.getLogger("kale_ext.clusters")

#: The value of ``tls`` that turns encryption and authentication off.
PLAINTEXT = "off-i-know"
#: Listening addresses that mean every interface of the host.
WILDCARDS = frozenset({"*", "0.0.0.0", "::", "[::]", ""})
#: The longest duration (seconds) accepted for timeouts and margins: a week.
MAX_SECONDS = 7 * 24 * 3600

_HOST = re.compile(r"[A-Za-z0-9_.:\[\]-]+|\*")
_ADDRESS = re.compile(r"([A-Za-z0-9_.\[\]:-]*:)?[0-9]{1,5}")
_DURATION = re.compile(r"[0-9]+(\.[0-9]+)? ?[A-Za-z]*")


def tls_enabled(options: Mapping[str, Any], *, warn: bool = False) -> bool:
    """Return whether a Dask cluster started with ``options`` uses TLS.

    Parameters
    ----------
    options
        The resolved start options; ``tls`` is True (or absent) or ``"off-i-know"``.
    warn
        Log a warning when TLS is off.

    Raises
    ------
    ConfigError
        For ``tls=False`` or any other value.
    """
    value = options.get("tls", True)
    if value is None or value is True:
        return True
    if isinstance(value, str) and value == PLAINTEXT:
        if warn:
            logger.warning(
                "tls=%r: this cluster runs without TLS (plaintext TCP, no authentication); "
                "anyone who reaches its scheduler's port can run code as you.", PLAINTEXT)
        return False
    if value is False:
        raise ConfigError(
            "tls=False would run the cluster without TLS: plaintext TCP with no "
            "authentication, so anyone who reaches the scheduler's port can run code as "
            f"you. If you mean it, set tls={PLAINTEXT!r} (a warning is logged and the "
            "scheduler never listens on every interface); otherwise leave tls out."
        )
    raise ConfigError(f"tls must be True or {PLAINTEXT!r} (plaintext, explicitly), but got "
                      f"tls={value!r}. Leave tls out for TLS.")


def check_plaintext_host(host: Any) -> None:
    """Refuse a plaintext scheduler listening on every interface (``*``, ``0.0.0.0``)."""
    if str(host).strip() in WILDCARDS:
        raise ConfigError(
            f"interface_host={host!r} would let a plaintext (tls={PLAINTEXT!r}) scheduler "
            "listen on every interface of this host. Name the one address or interface the "
            "workers reach (e.g. interface_host='ib0'), or leave tls on."
        )


def seconds(key: str, value: Any, *, minimum: float = 0.0, allow_zero: bool = True,
            unbounded: bool = False) -> float:
    """Return a duration given in seconds or as text (``"2 minutes"``), in seconds.

    Raises
    ------
    ConfigError
        Naming ``key`` and ``value`` when it is not a finite duration within
        [``minimum``, a week] (above zero unless ``allow_zero``; any finite length
        when ``unbounded``).
    """
    longest = math.inf if unbounded else MAX_SECONDS
    rule = (f"{key} must be seconds or a duration such as '90s' or '2 minutes', "
            f"{'at least' if allow_zero else 'more than'} {minimum:g}"
            + ("" if unbounded else f" and at most {MAX_SECONDS} seconds"))
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{rule}, but got {key}={value!r}.")
    if isinstance(value, str):
        if not _DURATION.fullmatch(value):
            raise ConfigError(f"{rule}, but got {key}={value!r} (only digits, a dot and a "
                              "unit are allowed).")
        from dask.utils import parse_timedelta

        try:
            number = float(parse_timedelta(value, default="seconds"))
        except (TypeError, ValueError, KeyError, IndexError, OverflowError) as e:
            raise ConfigError(f"{rule}, but got {key}={value!r}.") from e
    else:
        try:
            number = float(value)
        except OverflowError as e:
            raise ConfigError(f"{rule}, but got {key}={value!r}.") from e
    if (not math.isfinite(number) or number < minimum or number > longest
            or (not allow_zero and number <= minimum)):
        raise ConfigError(f"{rule}, but got {key}={value!r}.")
    return number


def positive_int(key: str, value: Any) -> int:
    """Return ``value`` when it is an integer of at least 1; else a ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, but got {key}={value!r}.")
    return value


def memory(value: Any, *, allow_auto: bool = False) -> str:
    """Return a memory size (``"2GiB"``, bytes) as text; at least 1 MiB."""
    from dask.utils import parse_bytes

    if allow_auto and value == "auto":
        return "auto"
    rule = (f"memory={value!r} is not a size of at least 1MiB (what one worker needs at "
            "the least); write it like '2GiB' or '500MB'.")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(rule)
    try:
        size = parse_bytes(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise ConfigError(rule) from e
    if not 2**20 <= size < 2**63:
        raise ConfigError(rule)
    return str(value)


def host(key: str, value: Any) -> str:
    """Return a host name, address or interface name; nothing a shell would read."""
    text = str(value)
    if not (isinstance(value, str) and _HOST.fullmatch(text)):
        raise ConfigError(f"{key} must be a host name, an address or an interface name "
                          f"(letters, digits and ._:[]-), but got {key}={value!r}.")
    return text


def dashboard_address(value: Any) -> str:
    """Return a dashboard address such as ``":0"`` or ``"127.0.0.1:8787"``."""
    text = str(value)
    if isinstance(value, bool) or not _ADDRESS.fullmatch(text) or int(
            text.rsplit(":", 1)[-1]) > 65535:
        raise ConfigError("dashboard_address must be [HOST]:PORT with a port of 0..65535, "
                          f"such as ':0' or '127.0.0.1:8787', but got "
                          f"dashboard_address={value!r}.")
    return text


def common(options: Mapping[str, Any]) -> None:
    """Check what every Dask start shares: TLS, addresses, memory, the idle timeout."""
    from kale_ext.clusters._idle import timeout_seconds

    plaintext = not tls_enabled(options)
    explicit = options.get("interface_host")
    if explicit is not None:
        if plaintext:
            check_plaintext_host(explicit)
        if str(explicit) != "*":
            host("interface_host", explicit)
    if options.get("dashboard_address") is not None:
        dashboard_address(options["dashboard_address"])
    pin = options.get("pin")
    if pin is not None and not isinstance(pin, bool):
        raise ConfigError(f"pin must be True or False, but got pin={pin!r}.")
    timeout_seconds(options)
