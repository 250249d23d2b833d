"""Which address of this host other hosts reach.

The address serves the metric channel, a Dask scheduler or an ipyparallel controller
whose workers run on compute nodes.

A login node has several interfaces (loopback, the site network, the cluster's fabric)
and its host name often resolves to a loopback address, which no compute node can
reach. So an address is chosen in this order: what the site configured (an interface
name such as ``ib0`` or an address), the local end of the route to the hosts that must
reach it (the batch system's compute nodes), the host name's address when it is not a
loopback one, the only interface that is not loopback; and otherwise an error that
names every interface seen and says which setting picks one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from kale_ext import config
from kale_ext._errors import ConfigError

ANY = ("0.0.0.0", "*")


def interfaces() -> dict[str, list[str]]:
    """IPv4 addresses of this host's interfaces that are up, by interface name."""
    import psutil

    stats = psutil.net_if_stats()
    found: dict[str, list[str]] = {}
    for name, addrs in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        v4 = [a.address for a in addrs if a.family == socket.AF_INET]
        if v4:
            found[name] = v4
    return found


def describe_interfaces(found: dict[str, list[str]] | None = None) -> str:
    """Every interface and its addresses in one line, for an error message."""
    found = interfaces() if found is None else found
    return ", ".join(f"{name} {' '.join(addrs)}" for name, addrs in sorted(found.items())) \
        or "none"


def is_loopback(address: str) -> bool:
    """Tell whether ``address`` is a loopback address (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def resolve_host(setting: str, *, key: str) -> str:
    """Return the address meant by a setting: an interface name, an address, a host name.

    Parameters
    ----------
    setting
        ``"ib0"`` (its first IPv4 address), ``"10.1.2.3"`` or ``"0.0.0.0"``/``"*"``
        (every interface) as they are, or a host name (resolved).
    key
        The setting's name, for the error message.
    """
    text = str(setting).strip()
    if text in ANY:
        return text
    found = interfaces()
    if text in found:
        return found[text][0]
    if _is_address(text):
        return text
    try:
        return socket.gethostbyname(text)
    except OSError as e:
        raise ConfigError(
            f"{key}={text!r} is neither an interface of this host nor a host name that "
            f"resolves ({e}). This host's interfaces: {describe_interfaces(found)}. Set "
            f"{key} to one of these interface names or addresses."
        ) from e


def route_address(target: str) -> str | None:
    """Return the local address of the route to ``target``, or None when there is none.

    ``target`` is an address or host name. Nothing is sent: connecting a UDP socket only
    picks the route.
    """
    try:
        infos = socket.getaddrinfo(target, 9, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    for *_, sockaddr in infos:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect(sockaddr)
            except OSError:
                continue
            return str(s.getsockname()[0])
    return None


def reachable_address(peers: Iterable[str] = (), *, setting: str = "kale.interface") -> str:
    """Return this host's address that the hosts ``peers`` (compute nodes) can reach.

    Parameters
    ----------
    peers
        Addresses or names of hosts that will connect here; the local end of the route
        to them is the answer. Loopback is chosen only when every peer is this host.
    setting
        The setting that overrides the choice, named in the error.

    Raises
    ------
    ConfigError
        When no address can be told apart: it names the interfaces seen and the setting.
    """
    sources = [route_address(peer) for peer in peers]
    routed = [s for s in sources if s is not None]
    outside_route = next((s for s in routed if not is_loopback(s)), None)
    if outside_route is not None:
        return outside_route
    if routed and len(routed) == len(sources):
        return "127.0.0.1"  # every peer is this host: a single-host batch system
    found = interfaces()
    outside = {name: [a for a in addrs if not is_loopback(a)] for name, addrs in found.items()}
    outside = {name: addrs for name, addrs in outside.items() if addrs}
    mine = {a for addrs in outside.values() for a in addrs}
    try:
        by_name = socket.gethostbyname(socket.gethostname())
    except OSError:
        by_name = ""
    if by_name in mine:
        return by_name
    if len(mine) == 1:
        return next(iter(mine))
    raise ConfigError(
        "Cannot tell which address of this host the workers on other hosts reach: "
        f"interfaces seen: {describe_interfaces(found)}; the host name "
        f"{socket.gethostname()!r} resolves to {by_name or 'nothing'}"
        + (" (loopback, unreachable from other hosts)" if is_loopback(by_name) else "")
        + f". Set {setting} to the interface or address the compute nodes reach: one of "
        f"{', '.join(sorted(outside)) or 'the interfaces above'}."
    )


def channel_host(local: bool = False, *, peers: Iterable[str] = ()) -> str:
    """Return the address the server binds and workers connect to.

    Parameters
    ----------
    local
        The workers run on this host: ``127.0.0.1`` unless ``kale.channel-host`` is set.
    peers
        Addresses or names of the hosts the workers run on (compute nodes), when known:
        the local end of the route to them is an address they reach.

    Notes
    -----
    ``kale.channel-host`` wins: an address, a host name or an interface name (``ib0``).
    For workers on other hosts ``kale.interface`` comes next (the same forms), then the
    automatic choice of :func:`reachable_address`, which never picks loopback for other
    hosts and raises a :class:`ConfigError` naming the interfaces it saw when it cannot
    choose.
    """
    configured = config.get("channel-host")
    if configured:
        return resolve_host(str(configured), key="kale.channel-host")
    if local:
        return "127.0.0.1"
    interface = config.get("interface")
    if interface:
        return resolve_host(str(interface), key="kale.interface")
    return reachable_address(peers, setting="kale.channel-host (or kale.interface)")
