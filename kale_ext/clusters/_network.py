"""Where a cluster's scheduler or controller listens: the address its workers dial.

Workers of a batch cluster run on compute nodes, which reach the login node only
through some of its interfaces; its loopback never, and often not its host name
(which resolves to loopback on many login nodes). The address is, in order:

1. the profile's or keyword's ``interface_host`` (an address, host name or interface name);
2. ``kale.interface`` (the same forms), the site-wide setting;
3. for ``kind="local"``, ``127.0.0.1``;
4. the local end of the route to the batch system's compute nodes (``sinfo``'s
   ``NodeAddr`` on Slurm), then the host name's address or the only interface that is
   not loopback; otherwise a :class:`ConfigError` naming every interface seen.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from kale_ext import config
from kale_ext.channel import is_loopback, reachable_address, resolve_host
from kale_ext.clusters import batch

SETTING = "interface_host (a profile key or keyword) or kale.interface"
ROUTE_PEERS = 8  # nodes whose routes are looked at: they share the login node's route
CERT_NODES = 256  # node addresses a certificate names at most (Dask checks none)


def node_addresses(kind: str, options: Mapping[str, Any]) -> list[str]:
    """Return the compute nodes' addresses the batch system lists for the cluster's queue."""
    if kind == "local":
        return []
    queue = options.get("queue")
    return batch.system(kind).node_addresses(str(queue) if queue else None)


def contact_host(kind: str, options: Mapping[str, Any],
                 nodes: list[str] | None = None) -> str:
    """Return the address of this host that the cluster's workers dial.

    See the module's notes. An explicit setting is returned as the setting means it (an
    interface name becomes its address; ``"*"`` stays, for a scheduler listening
    everywhere). ``nodes`` are the compute nodes' addresses when already asked for
    (:func:`node_addresses`).
    """
    explicit = options.get("interface_host")
    if explicit:
        return resolve_host(str(explicit), key="interface_host")
    if kind == "local":
        return "127.0.0.1"
    interface = config.get("interface")
    if interface:
        return resolve_host(str(interface), key="kale.interface")
    if nodes is None:
        nodes = node_addresses(kind, options)
    return reachable_address(nodes[:ROUTE_PEERS], setting=SETTING)


def certificate_hosts(contact: str, nodes: list[str]) -> tuple[list[str], list[str]]:
    """Return the IP addresses and DNS names a cluster's TLS certificate is issued for.

    The scheduler's address (what workers dial), loopback (clients on this host), this
    host's name, and the addresses of up to :data:`CERT_NODES` compute nodes, where the
    workers listen. Dask itself checks no host names; the names let a client that does
    (``ssl`` with ``check_hostname``) verify whom it reached.
    """
    ips: list[str] = []
    names: list[str] = [socket.gethostname(), "localhost"]
    for host in [contact, "127.0.0.1", *nodes[:CERT_NODES]]:
        if host in ("*", "0.0.0.0", ""):
            continue
        try:
            socket.inet_aton(host)
        except OSError:
            names.append(host)
            try:
                host = socket.gethostbyname(host)
            except OSError:
                continue
        if host not in ips and (host == "127.0.0.1" or not is_loopback(host)):
            ips.append(host)
    return ips, list(dict.fromkeys(names))
